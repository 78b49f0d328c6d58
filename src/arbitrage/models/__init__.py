"""Named default models and the local model store."""

from arbitrage.models.registry import NAMED_MODELS, NamedModel, PackagePart
from arbitrage.models.store import ModelStore, resolve_model_path

__all__ = ["NAMED_MODELS", "ModelStore", "NamedModel", "PackagePart", "resolve_model_path"]
