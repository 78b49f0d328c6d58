"""A saved router is one folder; :func:`load_router` reads it back, with clear errors when it can't.

Layout::

    ROUTER/
      router.json   # kind, label scheme, history annotation, downsampling, kind settings (features
                    # list / backbone), training-data fingerprint and counts, validation metrics, the
                    # τ table (τ -> escalation rate measured on the validation rows), timings
      split.json    # the question ids of the training and validation splits
      features_logistic.npz | features_gbt.joblib   (features router)
      model/        # fine-tuned transformer and tokenizer (lm router)

Folders are written to a temporary sibling and renamed into place, so a crash never leaves a
half-written router behind.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arbitrage.errors import RouterError
from arbitrage.router.base import Router, SavableRouter
from arbitrage.router.labels import LabelScheme
from arbitrage.router.metrics import TauRow, tau_for_rate

FORMAT = "arbitrage-router"
VERSION = 1
CONFIG_FILE = "router.json"
SPLIT_FILE = "split.json"


def fingerprint(rows: Iterable[Mapping[str, Any]]) -> str:
    """sha256 of the rows (order-independent): which data a router was trained and validated on."""
    digests = sorted(
        hashlib.sha256(json.dumps(dict(r), sort_keys=True, default=str).encode()).hexdigest() for r in rows
    )
    return hashlib.sha256("\n".join(digests).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class LoadedRouter:
    """A router read from its folder, with what was recorded when it was trained."""

    path: Path
    router: Router
    config: dict[str, Any]  # the whole router.json
    tau_table: tuple[TauRow, ...]  # τ -> escalation rate on the validation rows, τ ascending
    train_questions: frozenset[str]  # question ids the router was trained on
    val_questions: frozenset[str]  # question ids held out for its validation metrics

    @property
    def kind(self) -> str:
        return self.router.kind

    @property
    def metrics(self) -> dict[str, Any]:
        """Validation metrics recorded at training time."""
        return dict(self.config.get("metrics") or {})

    def tau_for_rate(self, target_rate: float) -> TauRow:
        """The τ whose validation escalation rate is closest to ``target_rate``."""
        return tau_for_rate(list(self.tau_table), target_rate)


def _load_features(folder: Path, config: dict[str, Any], scheme: LabelScheme, device: str) -> Router:
    from arbitrage.router.features import FeaturesRouter

    return FeaturesRouter.load(folder, config, scheme)


def _load_lm(folder: Path, config: dict[str, Any], scheme: LabelScheme, device: str) -> Router:
    from arbitrage.router.lm import LMRouter

    return LMRouter.load(folder, config, scheme, device=device)


KINDS: dict[str, Callable[[Path, dict[str, Any], LabelScheme, str], Router]] = {
    "features": _load_features,
    "lm": _load_lm,
}


def save_router(
    folder: Path,
    router: SavableRouter,
    config: dict[str, Any],
    split: dict[str, list[str]],
    *,
    overwrite: bool = False,
) -> Path:
    """Write ``router`` (weights via its ``save_weights``), its config and split to ``folder``."""
    folder = Path(folder).expanduser()
    if folder.exists() and not overwrite:
        raise RouterError(f"{folder} already exists (pass --force to replace it)")
    if folder.exists() and not (folder / CONFIG_FILE).is_file():
        raise RouterError(f"{folder} exists and is not a router folder; refusing to replace it")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        router.save_weights(tmp)
        full = {"format": FORMAT, "version": VERSION, **config}
        (tmp / CONFIG_FILE).write_text(json.dumps(full, indent=1, default=str))
        (tmp / SPLIT_FILE).write_text(json.dumps(split))
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            folder.rename(old)
            tmp.rename(folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def read_config(folder: Path) -> dict[str, Any]:
    """The router.json of a router folder, validated (no weights are loaded)."""
    folder = Path(folder).expanduser()
    if not folder.exists():
        raise RouterError(f"Router folder not found: {folder} (train one with `arbitrage train-router`)")
    if not folder.is_dir():
        raise RouterError(
            f"{folder} is not a folder: a router is saved as a folder by `arbitrage train-router`"
        )
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise RouterError(f"{folder} is not a router folder (no {CONFIG_FILE})")
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RouterError(f"Corrupt router config {path}: {exc}") from exc
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise RouterError(f"{path} is not an arbitrage router config")
    if config.get("version") != VERSION:
        raise RouterError(
            f"{path}: router format version {config.get('version')} (this arbitrage reads {VERSION})"
        )
    if config.get("kind") not in KINDS:
        raise RouterError(f"{path}: unknown router kind {config.get('kind')!r} (known: {', '.join(KINDS)})")
    return config


def load_router(folder: Path | str, device: str = "auto") -> LoadedRouter:
    """Load a saved router folder (``device`` only matters for the lm router)."""
    folder = Path(folder).expanduser()
    config = read_config(folder)
    try:
        scheme = LabelScheme.from_dict(config["labels"])
        kind_config = {**config.get("kind_config", {}), "annotate": bool(config["annotate"])}
        table = tuple(TauRow(tau=float(r["tau"]), rate=float(r["rate"])) for r in config["tau_table"])
        split = json.loads((folder / SPLIT_FILE).read_text())
        train_q, val_q = frozenset(split["train_questions"]), frozenset(split["val_questions"])
    except (KeyError, TypeError, ValueError, OSError) as exc:
        raise RouterError(f"Corrupt router folder {folder}: {exc!r}") from exc
    try:
        router = KINDS[config["kind"]](folder, kind_config, scheme, device)
    except RouterError:
        raise
    except Exception as exc:  # a corrupt weights file fails in format-specific ways (zip, pickle, torch)
        raise RouterError(f"Cannot load the {config['kind']} router weights in {folder}: {exc!r}") from exc
    return LoadedRouter(folder, router, config, table, train_q, val_q)
