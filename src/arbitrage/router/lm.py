"""The ``lm`` router (the paper's): a small transformer with a sequence-classification head.

Fine-tuned with transformers/torch on the text of one decision::

    Question: <question>

    [draft] <earlier step written by the draft>
    [target] <earlier step written by the target>

    Draft step: <the draft's proposed step>

With history annotation off the ``[draft]`` / ``[target]`` tags are left out (the steps stay). When the
text is longer than ``max_length`` tokens, the question keeps its first quarter of the budget, the
draft step its first half, and the remaining budget goes to the most recent earlier steps (older ones
are replaced by ``...``).

The backbone is any local Hugging Face checkpoint folder (``config.json``, weights, tokenizer), a local
``.gguf`` file, or the name of a model in arbitrage's store (``smollm2-135m``, ``qwen2.5-coder-0.5b``...,
fetched like any named model); always loaded with ``local_files_only=True``, nothing is downloaded
from a model hub. GGUF weights are de-quantized to float32 by transformers (it needs the ``gguf`` and
``accelerate`` packages, in the ``hf`` extra), so the quantized models this project runs with llama.cpp
double as router backbones. A decoder-only backbone (Qwen, Llama, SmolLM...) classifies from its last
token, an encoder (BERT...) from its pooled first token; both go through
``AutoModelForSequenceClassification``. Training and scoring run on CUDA when available
(``device="auto"``), else on CPU (slowly).

What is trained (``LMOptions.train_layers``):

- ``None`` (default): the whole model, as in the paper.
- ``N > 0``: the classification head, the backbone's last ``N`` transformer blocks and its final norm;
  everything below is frozen (a forward pass still runs through it every step).
- ``0``: the head only, on the backbone's frozen features: one forward pass over the training rows
  collects the head's input at the position the model classifies from, and the head (a linear layer)
  is then trained on those cached vectors (``100 × epochs`` full-batch AdamW passes at
  ``head_learning_rate``) -- minutes on a CPU where full
  fine-tuning takes hours. The cached path is checked against the full model's logits on the first
  batch; heads that are not a single linear layer fall back to training with the backbone frozen.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from arbitrage.errors import RouterError
from arbitrage.router.base import RouterExample
from arbitrage.router.labels import LabelScheme
from arbitrage.router.lm_backbone import (
    freeze_below,
    head_module,
    load_classifier,
    quiet_transformers,
    resolve_backbone,
    resolve_device,
)

if TYPE_CHECKING:
    from arbitrage.backends.base import StepOutput
    from arbitrage.trace import StepRecord

logger = logging.getLogger(__name__)

MODEL_DIR = "model"  # sub-folder of a saved router holding the fine-tuned model and its tokenizer


@dataclass(frozen=True, slots=True)
class LMOptions:
    """Fine-tuning settings of the lm router."""

    backbone: str | None = None  # HF checkpoint folder, .gguf file or named model (required to train)
    epochs: float = 2.0  # passes over the (downsampled) training rows
    batch_size: int = 8
    learning_rate: float = 3e-5
    weight_decay: float = 0.01
    warmup: float = 0.1  # share of the optimizer steps with a linear learning-rate warm-up
    max_length: int = 512  # tokens per input (question + history + draft step)
    max_steps: int | None = None  # cap on optimizer steps (quick runs, tests)
    device: str = "auto"  # "auto" (cuda if available, else cpu), "cpu", "cuda", "cuda:1", ...
    train_layers: int | None = None  # None: full fine-tuning; N: head + last N blocks; 0: head only
    head_learning_rate: float = 5e-3  # train_layers=0: AdamW rate of the head on cached features

    def __post_init__(self) -> None:
        if min(self.epochs, self.batch_size, self.learning_rate, self.head_learning_rate) <= 0:
            raise RouterError("--epochs, --batch-size, --lr and --head-lr must be positive")
        if self.max_length < 16:
            raise RouterError(f"--max-length must be at least 16 tokens, got {self.max_length}")
        if self.max_steps is not None and self.max_steps <= 0:
            raise RouterError(f"--max-steps must be positive, got {self.max_steps}")
        if not 0 <= self.warmup < 1:
            raise RouterError(f"warmup must be within [0, 1), got {self.warmup}")
        if self.train_layers is not None and self.train_layers < 0:
            raise RouterError(f"--train-layers must be 0 or more, got {self.train_layers}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class LMRouter:
    """A fine-tuned sequence classifier over the decision's text (see the module docstring)."""

    kind = "lm"

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        scheme: LabelScheme,
        annotate: bool,
        *,
        max_length: int = 512,
        device: str = "cpu",
        info: dict[str, Any] | None = None,
    ) -> None:
        self.model, self.tokenizer, self.scheme, self.annotate = model, tokenizer, scheme, annotate
        self.max_length, self.device = max_length, device
        self.info = info or {}
        self._specials = tokenizer.num_special_tokens_to_add(pair=False)

    # -- input text ---------------------------------------------------------------------------------
    def _count(self, texts: list[str]) -> list[int]:
        return [len(ids) for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]

    def _head(self, text: str, tokens: int) -> str:
        """The start of ``text`` that holds its first ``tokens`` tokens (cut in the original text)."""
        if tokens <= 0:
            return ""
        try:
            offsets = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)[
                "offset_mapping"
            ]
        except NotImplementedError:  # slow (python) tokenizers have no offsets: decode instead
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"][:tokens]
            return str(self.tokenizer.decode(ids))
        return text if len(offsets) <= tokens else text[: offsets[tokens - 1][1]]

    def format(self, example: RouterExample) -> str:
        """The classifier's input text for one decision, fitted to ``max_length`` tokens."""
        question = f"Question: {example.question.strip()}\n\n"
        steps = [
            (f"[{role}] {text.strip()}\n" if self.annotate else f"{text.strip()}\n")
            for role, text in zip(example.roles, example.steps, strict=True)
        ]
        draft = f"\nDraft step: {example.draft_text.strip()}"
        budget = self.max_length - self._specials - 4  # a few tokens of slack for merges at the joins
        q_len, d_len, *s_lens = self._count([question, draft, *steps])
        if q_len + d_len + sum(s_lens) > budget:
            if d_len > budget // 2:
                draft, d_len = self._head(draft, budget // 2), budget // 2
            if q_len > budget // 4:
                question, q_len = self._head(question, budget // 4) + "\n\n", budget // 4 + 2
            left = budget - q_len - d_len
            kept: list[str] = []
            for text, n in zip(reversed(steps), reversed(s_lens), strict=True):
                if n + 2 > left:
                    kept.append("...\n")
                    break
                kept.append(text)
                left -= n
            steps = kept[::-1]
        return question + "".join(steps) + draft

    def _encode(self, texts: list[str]) -> Any:
        enc = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        return {k: v.to(self.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}

    # -- scoring ------------------------------------------------------------------------------------
    def class_probabilities(self, examples: Sequence[RouterExample], batch_size: int = 16) -> np.ndarray:
        """``[len(examples), num_classes]`` softmax probabilities."""
        import torch

        self.model.eval()
        out = []
        with torch.inference_mode():
            for i in range(0, len(examples), batch_size):
                texts = [self.format(e) for e in examples[i : i + batch_size]]
                logits = self.model(**self._encode(texts)).logits.float()
                out.append(torch.softmax(logits, dim=-1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.scheme.num_classes))

    def score_batch(self, examples: Sequence[RouterExample]) -> np.ndarray:
        if not examples:
            return np.zeros(0)
        return self.scheme.escalation_score(self.class_probabilities(examples))

    def score(self, question: str, history: Sequence[StepRecord], draft_step: StepOutput) -> float:
        return float(self.score_batch([RouterExample.from_step(question, history, draft_step)])[0])

    # -- training -----------------------------------------------------------------------------------
    @classmethod
    def fit(
        cls,
        examples: Sequence[RouterExample],
        labels: np.ndarray,
        scheme: LabelScheme,
        *,
        annotate: bool = True,
        options: LMOptions,
        seed: int = 0,
        progress: bool = False,
    ) -> LMRouter:
        """Fine-tune ``options.backbone`` with a fresh ``scheme.num_classes``-way head."""
        import torch

        if options.backbone is None:
            raise RouterError(
                "The lm router needs --backbone: a local Hugging Face model folder, .gguf or name"
            )
        backbone = resolve_backbone(options.backbone)
        device = resolve_device(options.device)
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        tokenizer, model = load_classifier(backbone, scheme.num_classes, device)
        router = cls(
            model,
            tokenizer,
            scheme,
            annotate,
            max_length=options.max_length,
            device=device,
            info={
                "backbone": options.backbone,
                "backbone_path": str(backbone),
                "model_type": model.config.model_type,
                "parameters": sum(p.numel() for p in model.parameters()),
                "train": options.to_dict(),
            },
        )
        texts = [router.format(e) for e in examples]
        y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
        if options.train_layers == 0 and router._fit_head_on_cached_features(
            texts, y, options, seed, progress
        ):
            return router
        if options.train_layers is not None:
            router.info["trainable_parameters"] = freeze_below(model, options.train_layers)
        per_epoch = math.ceil(len(texts) / options.batch_size)
        total = max(1, math.ceil(per_epoch * options.epochs))
        if options.max_steps is not None:
            total = min(total, options.max_steps)
        optimizer = torch.optim.AdamW(
            [p for p in model.parameters() if p.requires_grad],
            lr=options.learning_rate,
            weight_decay=options.weight_decay,
        )
        warmup = int(options.warmup * total)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lambda s: (s + 1) / max(1, warmup) if s < warmup else max(0.0, (total - s) / (total - warmup)),
        )
        use_bf16 = device.startswith("cuda") and torch.cuda.is_bf16_supported()
        rng = np.random.default_rng(seed)
        model.train()
        step, losses = 0, []
        logger.info("fine-tuning %s on %d rows for %d steps on %s", backbone.name, len(texts), total, device)
        from tqdm import tqdm

        bar = tqdm(total=total, desc=f"fine-tuning {backbone.name}", unit="step", disable=not progress)
        # 1. epochs of shuffled mini-batches, until the step budget is spent
        while step < total:
            order = rng.permutation(len(texts))
            for i in range(0, len(order), options.batch_size):
                batch = order[i : i + options.batch_size]
                # 2. forward (bf16 autocast on GPU), cross-entropy over the scheme's classes
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_bf16):
                    logits = model(**router._encode([texts[j] for j in batch])).logits
                loss = torch.nn.functional.cross_entropy(logits.float(), y[batch].to(device))
                # 3. step the optimizer and the schedule
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                schedule.step()
                losses.append(loss.item())
                step += 1
                bar.update(1)
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}", refresh=False)
                if step % 50 == 0:
                    logger.info("step %d/%d loss %.4f", step, total, float(np.mean(losses[-50:])))
                if step >= total:
                    break
        bar.close()
        model.eval()
        router.info["train_steps"] = step
        router.info["train_loss_first"] = losses[0]
        router.info["train_loss_last"] = float(np.mean(losses[-max(1, min(10, len(losses) // 4)) :]))
        return router

    def _features(self, texts: list[str], batch_size: int, progress: bool) -> tuple[Any, Any]:
        """The head's input at the classified position for each text, and the first batch's logits."""
        import torch
        from tqdm import tqdm

        head = head_module(self.model)
        captured: list[Any] = []
        hook = head.register_forward_hook(lambda _m, args, _out: captured.append(args[0].detach()))
        rows, first_logits = [], None
        self.model.eval()
        try:
            with torch.inference_mode():
                batches = range(0, len(texts), batch_size)
                for i in tqdm(batches, desc="backbone features", unit="batch", disable=not progress):
                    enc = self._encode(texts[i : i + batch_size])
                    captured.clear()
                    logits = self.model(**enc).logits.float()
                    first_logits = logits if first_logits is None else first_logits
                    hidden = captured[-1].float()
                    if hidden.dim() == 3:  # decoder heads see every position: take the last attended one
                        mask = enc["attention_mask"]
                        last = (mask * torch.arange(mask.shape[1], device=mask.device)).argmax(-1)
                        hidden = hidden[torch.arange(hidden.shape[0]), last]
                    rows.append(hidden)
        finally:
            hook.remove()
        return torch.cat(rows), first_logits

    def _fit_head_on_cached_features(
        self, texts: list[str], y: Any, options: LMOptions, seed: int, progress: bool
    ) -> bool:
        """Train only a linear head on frozen backbone features (see the module docstring); False when
        the head is not one linear layer or the cached path does not reproduce the model's logits."""
        import torch

        head = head_module(self.model)
        if not isinstance(head, torch.nn.Linear):
            logger.info("the %s head is not one linear layer: training it on a frozen backbone", type(head))
            return False
        batch = max(options.batch_size, 16)
        features, first_logits = self._features(texts, batch, progress)
        with torch.inference_mode():
            check = head(features[: first_logits.shape[0]]).float()
        if not torch.allclose(check, first_logits, atol=1e-3, rtol=1e-3):
            logger.info("cached features do not reproduce the model's logits: training on a frozen backbone")
            return False
        # full-batch AdamW on the cached vectors: each pass costs microseconds
        torch.manual_seed(seed)
        features, target = features.to(self.device), y.to(self.device)
        passes = max(50, int(options.epochs * 100))
        optimizer = torch.optim.AdamW(
            head.parameters(), lr=options.learning_rate, weight_decay=options.weight_decay
        )
        head.train()
        losses = []
        for _ in range(passes):
            loss = torch.nn.functional.cross_entropy(head(features).float(), target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        head.eval()
        self.info["train_steps"] = passes
        self.info["train_loss_first"] = losses[0]
        self.info["train_loss_last"] = losses[-1]
        self.info["trainable_parameters"] = sum(p.numel() for p in head.parameters())
        self.info["cached_features"] = True
        return True

    # -- persistence --------------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        return {"max_length": self.max_length, **self.info}

    def save_weights(self, folder: Path) -> None:
        with quiet_transformers():
            self.model.save_pretrained(folder / MODEL_DIR)
            self.tokenizer.save_pretrained(folder / MODEL_DIR)

    @classmethod
    def load(
        cls, folder: Path, config: dict[str, Any], scheme: LabelScheme, device: str = "auto"
    ) -> LMRouter:
        device = resolve_device(device)
        tokenizer, model = load_classifier(folder / MODEL_DIR, None, device)
        if model.config.num_labels != scheme.num_classes:
            raise RouterError(
                f"{folder}: the model has {model.config.num_labels} outputs but the label scheme "
                f"{scheme.num_classes} classes"
            )
        model.eval()
        info = {k: v for k, v in config.items() if k not in ("max_length", "annotate")}
        return cls(
            model,
            tokenizer,
            scheme,
            bool(config["annotate"]),
            max_length=int(config.get("max_length", 512)),
            device=device,
            info=info,
        )
