"""Loading a transformers causal LM from a local folder for the ``hf:`` backend: its device and dtype.

Nothing is ever downloaded: loading passes ``local_files_only=True``, and a path that is not a folder is
an error, not a hub id.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arbitrage.errors import ConfigError, ModelFileError, ModelNotFoundError

DTYPES = ("auto", "float32", "float16", "bfloat16")


@dataclass(frozen=True, slots=True)
class LoadedLM:
    """A causal LM and its tokenizer as :class:`~arbitrage.backends.hf.HFGenerator` runs them."""

    folder: Path  # the model folder (config.json, weights, tokenizer)
    device: str  # resolved: cpu, cuda, cuda:N or mps
    tokenizer: Any  # transformers tokenizer
    model: Any  # transformers causal LM, on ``device``, in eval mode


def pick_device(device: str) -> str:
    """Resolve ``auto`` to the best available device; check that a named one exists."""
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        return "mps" if mps is not None and mps.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={device}: this torch build sees no CUDA GPU (use device=cpu)")
    return device


def load_causal_lm(path: str | Path, device: str, dtype: str) -> LoadedLM:
    """Load the model folder ``path`` on ``device`` (``auto``: see :func:`pick_device`) in ``dtype``
    (``auto``: float32 on CPU, the checkpoint's dtype on a GPU)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise ModelNotFoundError(
            f"Hugging Face model folder not found: {folder} (hf: takes a local folder with "
            "config.json; arbitrage never downloads from the hub)"
        )
    if not (folder / "config.json").is_file():
        raise ModelFileError(f"{folder} has no config.json: not a Hugging Face model folder")
    if dtype not in DTYPES:
        raise ConfigError(f"dtype={dtype!r}: use one of {', '.join(DTYPES)}")
    device = pick_device(device)
    torch_dtype: Any = (
        (torch.float32 if device == "cpu" else "auto") if dtype == "auto" else getattr(torch, dtype)
    )
    try:
        tokenizer: Any = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        model: Any = AutoModelForCausalLM.from_pretrained(
            folder, local_files_only=True, **_dtype_kwarg(torch_dtype)
        )
    except (OSError, ValueError, KeyError) as exc:
        raise ModelFileError(f"transformers could not load {folder}: {exc}") from exc
    move: Any = model.to
    move(device)
    model.eval()
    return LoadedLM(folder, device, tokenizer, model)


def _dtype_kwarg(dtype: Any) -> dict[str, Any]:
    """``dtype=`` on transformers >= 4.56, ``torch_dtype=`` before."""
    import transformers
    from packaging.version import Version

    key = "dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"
    return {key: dtype}
