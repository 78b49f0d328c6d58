"""Pick a generator backend from a spec string, in one place, through a registry.

Specs:
- ``NAME`` (a named model, fetched on first use) or ``PATH.gguf`` → llama.cpp (the default scheme)
- ``llamacpp:NAME_OR_PATH`` → llama.cpp, explicitly
- ``openai:BASE_URL#MODEL?options`` → an OpenAI-compatible server (vLLM, SGLang, llama.cpp's servers)
- ``hf:PATH?options`` → a local Hugging Face transformers model folder, in process
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from arbitrage.backends.base import Generator
from arbitrage.errors import ConfigError
from arbitrage.prompts import PromptStyle
from arbitrage.settings import Settings


@dataclass(frozen=True, slots=True)
class GeneratorOptions:
    """Options every backend may use (each ignores what does not apply to it)."""

    n_ctx: int = 4096  # context window for local backends
    prompt_style: PromptStyle = field(default_factory=PromptStyle)
    seed: int = 0
    settings: Settings | None = None


def _load_llamacpp(target: str, options: GeneratorOptions) -> Generator:
    from arbitrage.backends.llamacpp import LlamaCppGenerator
    from arbitrage.models.registry import NAMED_MODELS
    from arbitrage.models.store import ModelStore, resolve_model_path

    store = ModelStore(options.settings)
    path = resolve_model_path(target, store=store)
    named = NAMED_MODELS.get(target)
    return LlamaCppGenerator(
        path,
        name=target if named else path.stem,
        n_ctx=options.n_ctx,
        chat_format=named.chat_format if named else None,
        prompt_style=options.prompt_style,
        seed=options.seed,
        settings=store.settings,
    )


def _load_openai(target: str, options: GeneratorOptions) -> Generator:
    from arbitrage.backends.openai_http import load_openai

    return load_openai(target, options.prompt_style, options.settings)


def _load_hf(target: str, options: GeneratorOptions) -> Generator:
    from arbitrage.backends.hf import load_hf

    return load_hf(target, options.prompt_style, options.seed)


BACKENDS: dict[str, Callable[[str, GeneratorOptions], Generator]] = {
    "llamacpp": _load_llamacpp,
    "openai": _load_openai,
    "hf": _load_hf,
}
DEFAULT_SCHEME = "llamacpp"


def split_spec(spec: str) -> tuple[str, str]:
    """``scheme:rest`` → (scheme, rest); a bare name or path gets the default scheme."""
    scheme, sep, rest = spec.partition(":")
    if sep and scheme in BACKENDS:
        return scheme, rest
    return DEFAULT_SCHEME, spec


def load_generator(spec: str, options: GeneratorOptions | None = None) -> Generator:
    """Build the generator a spec names (see the module docstring for the forms)."""
    if not spec or not spec.strip():
        raise ConfigError("Empty model spec")
    scheme, rest = split_spec(spec.strip())
    return BACKENDS[scheme](rest, options or GeneratorOptions())
