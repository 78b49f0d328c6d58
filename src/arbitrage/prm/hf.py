"""Trained process reward models through transformers, each with its exact input format.

Formats (``hf:PATH#FORMAT``; detected from the checkpoint's ``config.json`` when left out):

- ``skywork`` (Skywork-o1-Open-PRM-Qwen-2.5-1.5B/7B, architecture ``Qwen2ForPrmModel``): a Qwen2 trunk with
  a value head (``v_head.summary``: hidden → 1). Input = BOS + problem + "\\n", then each step's tokens
  followed by the step token "\\n" (newlines inside a step become spaces: the model was trained with
  one line per step). Reward = sigmoid(value) at each step token.
- ``qwen`` (Qwen2.5-Math-PRM-7B, ``Qwen2ForProcessRewardModel``): a Qwen2 trunk with a two-class head
  per token (``score``: Linear(h, h), ReLU, Linear(h, 2)). Input = the chat template with system
  "Please reason step by step, and put your final answer within \\boxed{}.", user = question,
  assistant = the steps each followed by ``<extra_0>``. Reward = softmax(logits)[1] at each ``<extra_0>``.
- ``shepherd`` (Math-Shepherd, any causal LM trained that way): input = question + " " + the steps as
  "Step i: <text> ки" joined by "\\n"; reward = P("+") over {"+", "-"} from the LM's logits at each
  "ки" tag.

Every step's reward comes from one forward pass, so ``score`` returns all of them whatever
``only_last`` says; ``score_batch`` runs several solutions per pass (right padding, attention mask).
The heads' weights are read from the checkpoint's safetensors (or ``pytorch_model.bin``) files, so no
``trust_remote_code`` is needed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arbitrage.errors import ConfigError, ModelFileError, ScorerError
from arbitrage.prm.base import QWEN_PRM_SYSTEM, StepScores, check_request

logger = logging.getLogger(__name__)

SHEPHERD_TAG = "ки"


@dataclass(frozen=True, slots=True)
class Encoded:
    """One solution's model input and where its step rewards are read."""

    input_ids: list[int]  # [tokens]
    positions: list[int]  # [steps] index in input_ids of each step's reward token


# -- input construction, per format ---------------------------------------------------------------------


def encode_skywork(tokenizer: Any, question: str, steps: Sequence[str], step_token: str = "\n") -> Encoded:
    bos = tokenizer.bos_token or ""
    ids = list(tokenizer.encode(bos + question + "\n", add_special_tokens=False))
    step_id = tokenizer.encode(step_token, add_special_tokens=False)[-1]
    positions = []
    for step in steps:
        text = " ".join(step.split("\n")).strip()
        ids += [*tokenizer.encode(text, add_special_tokens=False), step_id]
        positions.append(len(ids) - 1)
    return Encoded(ids, positions)


def encode_qwen(tokenizer: Any, question: str, steps: Sequence[str]) -> Encoded:
    clean = [s.replace("<extra_0>", "").strip() for s in steps]
    messages = [
        {"role": "system", "content": QWEN_PRM_SYSTEM},
        {"role": "user", "content": question},
        {"role": "assistant", "content": "<extra_0>".join(clean) + "<extra_0>"},
    ]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
    ids = list(tokenizer.encode(text, add_special_tokens=False))
    tag = tokenizer.convert_tokens_to_ids("<extra_0>")
    positions = [i for i, t in enumerate(ids) if t == tag]
    return Encoded(ids, positions)


def shepherd_text(question: str, steps: Sequence[str]) -> str:
    body = "\n".join(
        f"Step {i}: {s.replace(SHEPHERD_TAG, '').strip()} {SHEPHERD_TAG}" for i, s in enumerate(steps, 1)
    )
    return f"{question} {body}"


def encode_shepherd(tokenizer: Any, question: str, steps: Sequence[str]) -> Encoded:
    ids = list(tokenizer.encode(shepherd_text(question, steps)))  # with BOS, as Math-Shepherd does
    tag = shepherd_tag_id(tokenizer)
    positions = [i for i, t in enumerate(ids) if t == tag]
    return Encoded(ids, positions)


def shepherd_tag_id(tokenizer: Any) -> int:
    """Token id of the step tag as it occurs in the text, after a space (its last token if split)."""
    return int(tokenizer.encode(" " + SHEPHERD_TAG, add_special_tokens=False)[-1])


def shepherd_candidates(tokenizer: Any) -> tuple[int, int]:
    """Token ids of "+" and "-" as Math-Shepherd reads them ("+ -" tokenised, first and last)."""
    ids = tokenizer.encode("+ -", add_special_tokens=False)
    if len(ids) < 2:
        raise ScorerError("The tokenizer does not split '+ -' into two tokens; not a Math-Shepherd model")
    return int(ids[0]), int(ids[-1])


# -- models with their heads ------------------------------------------------------------------------------


def _read_weights(path: Path, prefix: str) -> dict[str, Any]:
    """Tensors of a checkpoint folder whose names start with ``prefix`` (the prefix removed)."""
    import torch

    files: list[Path] = []
    index = path / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text())["weight_map"]
        files = sorted({path / f for k, f in weight_map.items() if k.startswith(prefix)})
    elif (path / "model.safetensors").is_file():
        files = [path / "model.safetensors"]
    out: dict[str, Any] = {}
    if files:
        from safetensors import safe_open

        for file in files:
            with safe_open(str(file), framework="pt") as fh:
                for key in fh.keys():  # noqa: SIM118 (safe_open is not a mapping)
                    if key.startswith(prefix):
                        out[key[len(prefix) :]] = fh.get_tensor(key)
    elif (path / "pytorch_model.bin").is_file():
        state = torch.load(path / "pytorch_model.bin", map_location="cpu", weights_only=True)
        out = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    if not out:
        raise ModelFileError(f"{path}: no weights named {prefix}* in the checkpoint")
    return out


def _head_module(kind: str, hidden: int) -> Any:
    from torch import nn

    if kind == "skywork":
        head = nn.Module()
        head.summary = nn.Linear(hidden, 1)
        return head
    return nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 2))


class TrunkWithHead:
    """A transformer trunk and a per-token head: Skywork's value head or Qwen's two-class head."""

    def __init__(self, trunk: Any, head: Any, kind: str) -> None:
        self.trunk = trunk
        self.head = head
        self.kind = kind

    @classmethod
    def from_config(cls, config: Any, kind: str) -> TrunkWithHead:
        """Randomly initialised (for tests and for building checkpoints)."""
        from transformers import AutoModel

        return cls(AutoModel.from_config(config), _head_module(kind, config.hidden_size), kind)

    @classmethod
    def from_pretrained(cls, path: Path, kind: str, dtype: Any) -> TrunkWithHead:
        from transformers import AutoModel

        trunk = AutoModel.from_pretrained(str(path), dtype=dtype)
        head = _head_module(kind, trunk.config.hidden_size)
        prefix = "v_head." if kind == "skywork" else "score."
        head.load_state_dict(_read_weights(path, prefix), strict=True)
        return cls(trunk, head.to(trunk.dtype), kind)

    def state_dict(self) -> dict[str, Any]:
        """Weights under the names the published checkpoints use."""
        prefix = "v_head." if self.kind == "skywork" else "score."
        state = {f"model.{k}": v for k, v in self.trunk.state_dict().items()}
        state.update({f"{prefix}{k}": v for k, v in self.head.state_dict().items()})
        return state

    def to(self, device: str) -> TrunkWithHead:
        self.trunk.to(device)
        self.head.to(device)
        return self

    def eval(self) -> TrunkWithHead:
        self.trunk.eval()
        self.head.eval()
        return self

    def token_rewards(self, input_ids: Any, attention_mask: Any) -> Any:
        """[batch, tokens] reward at every position."""
        import torch

        hidden = self.trunk(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.kind == "skywork":
            return torch.sigmoid(self.head.summary(hidden.to(self.head.summary.weight.dtype)).squeeze(-1))
        return torch.softmax(self.head(hidden).float(), dim=-1)[..., 1]


class ShepherdModel:
    """A causal LM read as Math-Shepherd: P("+") over {"+", "-"} at every position."""

    def __init__(self, lm: Any, good: int, bad: int) -> None:
        self.lm = lm
        self.good = good
        self.bad = bad

    def to(self, device: str) -> ShepherdModel:
        self.lm.to(device)
        return self

    def eval(self) -> ShepherdModel:
        self.lm.eval()
        return self

    def token_rewards(self, input_ids: Any, attention_mask: Any) -> Any:
        import torch

        logits = self.lm(input_ids=input_ids, attention_mask=attention_mask).logits
        pair = logits[..., [self.good, self.bad]].float()
        return torch.softmax(pair, dim=-1)[..., 0]


ENCODERS: dict[str, Callable[[Any, str, Sequence[str]], Encoded]] = {
    "skywork": encode_skywork,
    "qwen": encode_qwen,
    "shepherd": encode_shepherd,
}
ARCHITECTURES = {"Qwen2ForPrmModel": "skywork", "Qwen2ForProcessRewardModel": "qwen"}


class HFStepScorer:
    """A trained PRM in-process: one forward pass gives every step's reward."""

    def __init__(
        self, model: Any, tokenizer: Any, fmt: str, name: str, device: str = "cpu", batch_size: int = 8
    ) -> None:
        if fmt not in ENCODERS:
            raise ConfigError(f"Unknown HF PRM format {fmt!r} (known: {', '.join(ENCODERS)})")
        if batch_size <= 0:
            raise ConfigError(f"batch_size must be positive, got {batch_size}")
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.fmt = fmt
        self.device = device
        self.batch_size = batch_size
        self.name = f"hf({name}, {fmt})"
        self._encode = ENCODERS[fmt]
        pad = tokenizer.pad_token_id
        self._pad = int(pad if pad is not None else (tokenizer.eos_token_id or 0))

    def encode(self, question: str, steps: Sequence[str]) -> Encoded:
        encoded = self._encode(self.tokenizer, question, steps)
        if len(encoded.positions) != len(steps):
            raise ScorerError(
                f"{self.name}: found {len(encoded.positions)} reward positions for {len(steps)} steps "
                "(a step contains the step tag, or the tokenizer is not this PRM's)"
            )
        return encoded

    def score_batch(self, items: Sequence[tuple[str, Sequence[str]]]) -> list[list[float]]:
        """Rewards of every step of each (question, steps) item, ``batch_size`` items per forward pass."""
        import torch

        encoded = [self.encode(q, s) for q, s in items]
        out: list[list[float]] = []
        for start in range(0, len(encoded), self.batch_size):
            chunk = encoded[start : start + self.batch_size]
            width = max(len(e.input_ids) for e in chunk)
            ids = torch.full((len(chunk), width), self._pad, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, e in enumerate(chunk):
                ids[row, : len(e.input_ids)] = torch.tensor(e.input_ids)
                mask[row, : len(e.input_ids)] = 1
            with torch.inference_mode():
                rewards = self.model.token_rewards(ids.to(self.device), mask.to(self.device)).cpu()
            for row, e in enumerate(chunk):
                out.append([float(rewards[row, p]) for p in e.positions])
        return out

    def score(self, question: str, steps: Sequence[str], *, only_last: bool = True) -> StepScores:
        check_request(question, steps)
        t0 = time.perf_counter()
        rewards = self.score_batch([(question, steps)])[0]
        return StepScores(
            rewards=tuple(rewards),
            first=0,
            seconds=time.perf_counter() - t0,
            scorer=self.name,
            prompt_tokens=len(self.encode(question, steps).input_ids),
        )

    def close(self) -> None:
        pass


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def detect_format(path: Path) -> str:
    """The PRM format of a checkpoint folder, from its config's architectures."""
    config = path / "config.json"
    if not config.is_file():
        raise ModelFileError(f"{path} is not a Hugging Face checkpoint folder (no config.json)")
    architectures = json.loads(config.read_text()).get("architectures") or []
    for arch in architectures:
        if arch in ARCHITECTURES:
            return ARCHITECTURES[arch]
    if any(a.endswith("ForCausalLM") for a in architectures):
        return "shepherd"
    raise ConfigError(
        f"Cannot tell the PRM format of {path} (architectures {architectures}); "
        f"name it: hf:{path}#FORMAT with FORMAT one of {', '.join(ENCODERS)}"
    )


def load_hf_prm(
    path: str | Path, fmt: str | None = None, device: str = "cpu", batch_size: int = 8
) -> HFStepScorer:
    """Load a PRM checkpoint folder (weights, config, tokenizer) in the given or detected format."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise ModelFileError(f"PRM checkpoint folder not found: {folder}")
    fmt = fmt or detect_format(folder)
    if fmt not in ENCODERS:
        raise ConfigError(f"Unknown HF PRM format {fmt!r} (known: {', '.join(ENCODERS)})")
    dtype = torch.float32 if device == "cpu" else "auto"
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        model: Any
        if fmt == "shepherd":
            good, bad = shepherd_candidates(tokenizer)
            model = ShepherdModel(AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype), good, bad)
        else:
            with _quiet_transformers():  # the trunk load reports the head's weights as unexpected
                model = TrunkWithHead.from_pretrained(folder, fmt, dtype)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise ModelFileError(f"Cannot load the PRM in {folder}: {exc}") from exc
    return HFStepScorer(model, tokenizer, fmt, folder.name, device=device, batch_size=batch_size)
