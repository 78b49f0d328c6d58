"""Export a GGUF model as a Hugging Face model folder (for vLLM, SGLang and the ``hf:`` backend).

Serving engines and transformers read a folder of ``config.json``, ``model.safetensors`` and the
tokenizer files. transformers reads GGUF files itself (``from_pretrained(dir, gguf_file=...)``) and
de-quantizes the weights; the folder written here holds those weights in bf16 (the default) or another
float dtype, the tokenizer and the GGUF's chat template. Nothing is downloaded.

The export is idempotent and crash-safe: the folder is written beside the destination under a temporary
name and renamed into place when complete, with an ``arbitrage-export.json`` marker recording its source
(an existing folder from the same source is kept unless ``force``).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from arbitrage.errors import ConfigError, ModelFileError

MARKER = "arbitrage-export.json"
DTYPES = ("bfloat16", "float16", "float32")


@dataclass(frozen=True, slots=True)
class ExportResult:
    """What :func:`export_hf` wrote."""

    folder: Path  # the Hugging Face model folder
    source: Path  # the GGUF file it came from
    dtype: str  # the dtype of the weights written
    bytes: int  # size of the folder's files
    seconds: float  # time taken (0 when an existing export was kept)
    reused: bool  # True: the folder was already an export of this source and was kept


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


def _marker(folder: Path) -> dict[str, object] | None:
    path = folder / MARKER
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def export_hf(gguf: Path, folder: Path, *, dtype: str = "bfloat16", force: bool = False) -> ExportResult:
    """Write the GGUF model ``gguf`` as a Hugging Face folder at ``folder`` (see the module docstring).

    ModelFileError for a missing or non-GGUF source, ConfigError for an unknown dtype or a destination
    that exists and is not an export of this source (nothing there is overwritten unless ``force``).
    """
    from arbitrage.models.store import check_gguf_file

    check_gguf_file(gguf)
    if dtype not in DTYPES:
        raise ConfigError(f"Unknown dtype {dtype!r} for an export (known: {', '.join(DTYPES)})")
    source = gguf.resolve()
    stat = source.stat()
    identity = {"source": str(source), "size": stat.st_size, "mtime": int(stat.st_mtime), "dtype": dtype}
    if folder.exists() and not force:
        marker = _marker(folder) if folder.is_dir() else None
        if marker is not None and all(marker.get(k) == v for k, v in identity.items()):
            return ExportResult(folder, source, dtype, _folder_bytes(folder), 0.0, reused=True)
        if folder.is_file() or any(folder.iterdir()):
            raise ConfigError(
                f"{folder} exists and is not an export of {source.name} in {dtype}: choose another folder "
                "or pass --force to replace it"
            )
    started = time.perf_counter()
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:  # pragma: no cover - the hf extra is part of every install we document
        raise ConfigError(
            f"Exporting needs transformers and torch (pip install 'arbitrage[hf]'): {exc}"
        ) from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name)
        model = AutoModelForCausalLM.from_pretrained(
            str(source.parent), gguf_file=source.name, dtype=getattr(torch, dtype)
        )
    except (ValueError, KeyError, RuntimeError) as exc:
        raise ModelFileError(f"transformers cannot read {source.name}: {exc}") from None
    # The loaded model carries the GGUF quantizer marker; without removing it save_pretrained refuses
    # (or writes a config no engine can load). The weights are plain float tensors by now.
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    staging = folder.parent / f".{folder.name}.partial"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    (staging / MARKER).write_text(json.dumps(identity, indent=1) + "\n")
    if folder.exists():
        shutil.rmtree(folder) if folder.is_dir() else folder.unlink()
    staging.rename(folder)
    return ExportResult(folder, source, dtype, _folder_bytes(folder), time.perf_counter() - started, False)
