"""`arbitrage models export-hf`'s checks before any model is read (the export itself runs in the vLLM
integration tests, which serve what it writes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from arbitrage.errors import ConfigError, ModelFileError, ModelNotFoundError
from arbitrage.models.export import MARKER, export_hf


def fake_gguf(tmp_path: Path) -> Path:
    path = tmp_path / "m.gguf"
    path.write_bytes(b"GGUF" + b"\0" * 64)
    return path


def test_a_missing_or_foreign_source_is_named(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="not found"):
        export_hf(tmp_path / "none.gguf", tmp_path / "out")
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"PK\3\4 not a gguf")
    with pytest.raises(ModelFileError, match="Not a GGUF"):
        export_hf(bad, tmp_path / "out")


def test_unknown_dtype(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="dtype 'int4'"):
        export_hf(fake_gguf(tmp_path), tmp_path / "out", dtype="int4")


def test_an_occupied_folder_is_not_overwritten(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="--force"):
        export_hf(fake_gguf(tmp_path), out)
    assert (out / "notes.txt").read_text() == "mine"


def test_an_export_of_the_same_source_is_kept(tmp_path: Path) -> None:
    gguf = fake_gguf(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    stat = gguf.stat()
    marker = {
        "source": str(gguf.resolve()),
        "size": stat.st_size,
        "mtime": int(stat.st_mtime),
        "dtype": "bfloat16",
    }
    (out / MARKER).write_text(json.dumps(marker))
    (out / "model.safetensors").write_bytes(b"x" * 10)
    result = export_hf(gguf, out)
    assert result.reused and result.seconds == 0.0 and result.bytes > 10
    with pytest.raises(ConfigError, match="not an export"):  # another dtype is another export
        export_hf(gguf, out, dtype="float32")
