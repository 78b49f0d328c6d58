"""The ``lm`` router's backbone: finding it, loading it as a sequence classifier, freezing its lower part.

The backbone is any local Hugging Face checkpoint folder (``config.json``, weights, tokenizer), a local
``.gguf`` file, or the name of a model in arbitrage's store (see :mod:`arbitrage.router.lm`); always
loaded with ``local_files_only=True``, nothing is downloaded from a model hub.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from arbitrage.errors import RouterError


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` when a GPU is usable, else ``cpu``; other values are checked."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RouterError(f"--device {device}: no CUDA GPU is available here (use cpu or auto)")
    if device != "cpu" and not device.startswith("cuda"):
        raise RouterError(f"Unknown --device {device!r} (use auto, cpu, cuda or cuda:N)")
    return device


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' load reports and progress bars for the duration, then restore them."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def resolve_backbone(spec: str) -> Path:
    """A backbone spec as a local path: a model folder, a ``.gguf`` file, or a named model's GGUF file."""
    from arbitrage.models.registry import NAMED_MODELS

    path = Path(spec).expanduser()
    if path.is_dir() or (path.is_file() and path.suffix == ".gguf"):
        return path
    if spec in NAMED_MODELS:
        from arbitrage.models.store import resolve_model_path

        return resolve_model_path(spec)
    raise RouterError(
        f"Backbone not found: {spec} (give a Hugging Face model folder, a .gguf file, or a named model: "
        f"{', '.join(NAMED_MODELS)})"
    )


def load_classifier(path: Path, num_labels: int | None, device: str) -> tuple[Any, Any]:
    """Tokenizer and sequence classifier from a model folder or a .gguf file (``num_labels``: new head)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    kwargs: dict[str, Any] = {"local_files_only": True}
    model_kwargs: dict[str, Any] = {}
    if path.is_file():  # a GGUF file: de-quantized into a plain float32 model (trainable, savable)
        folder, kwargs["gguf_file"] = path.parent, path.name
        try:
            from transformers import GgufConfig

            model_kwargs = {"quantization_config": GgufConfig(dequantize=True)}
        except ImportError:  # transformers 4.x: GGUF weights are always de-quantized
            pass
    elif (path / "config.json").is_file():
        folder = path
    else:
        raise RouterError(f"{path} is not a Hugging Face model folder (no config.json) or a .gguf file")
    try:
        with quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(folder, **kwargs)
            if num_labels is not None:
                model_kwargs["num_labels"] = num_labels
            model = AutoModelForSequenceClassification.from_pretrained(folder, **kwargs, **model_kwargs)
    except ImportError as exc:
        raise RouterError(f"Loading {path} needs more packages: {exc} (pip install 'arbitrage[hf]')") from exc
    except (OSError, ValueError, KeyError) as exc:
        if "accelerate" in str(exc) or ("gguf" in str(exc).lower() and "install" in str(exc)):
            raise RouterError(f"Loading {path} needs more packages: {exc}") from exc
        raise RouterError(f"Cannot load the transformer in {path}: {exc}") from exc
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise RouterError(f"The tokenizer in {folder} has neither a pad nor an end-of-sequence token")
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id
    if path.is_file():
        model = model.float()  # GGUF files may carry float16 tensors: train and save in float32
    return tokenizer, model.to(device)


def head_module(model: Any) -> Any:
    """The classification head: the model's parameters outside its backbone."""
    prefix = getattr(model, "base_model_prefix", "")
    heads = [m for name, m in model.named_children() if name != prefix and any(True for _ in m.parameters())]
    if len(heads) != 1:
        raise RouterError(f"Cannot tell the classification head of {type(model).__name__} from its backbone")
    return heads[0]


def _blocks(model: Any) -> Any:
    """The backbone's stack of transformer blocks (its longest ModuleList)."""
    import torch

    lists = [m for m in model.base_model.modules() if isinstance(m, torch.nn.ModuleList)]
    if not lists:
        raise RouterError(f"{type(model).__name__} has no stack of blocks to train the top of")
    return max(lists, key=len)


def freeze_below(model: Any, train_layers: int) -> int:
    """Freeze all but the head, the last ``train_layers`` blocks and the backbone's non-block,
    non-embedding parameters (its final norm); return the number of trainable parameters."""
    blocks = _blocks(model)
    in_blocks = {id(p) for p in blocks.parameters()}
    top = {id(p) for block in list(blocks)[len(blocks) - train_layers :] for p in block.parameters()}
    head = {id(p) for p in head_module(model).parameters()}
    for name, param in model.named_parameters():
        outside = id(param) not in in_blocks and "embed" not in name
        param.requires_grad_(id(param) in head or id(param) in top or (train_layers > 0 and outside))
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
