"""Raw-prompt chat templates for backends that cannot ask the model for its own template.

An OpenAI-compatible server's completions endpoint takes raw text, so the client must render the chat
turn itself (see ``backends/openai_http.py``); a transformers model folder without a chat template
needs the same. A template is one of:

- ``chatml`` (default): ``<|im_start|>system/user/assistant`` turns (Qwen, SmolLM2, many others), the
  system message as its own turn;
- another name of :data:`arbitrage.prompts.FALLBACK_FORMATS` (``gemma``, ``plain``): one user turn with
  the system text folded in;
- a path to a Jinja chat-template file (``.jinja``), or to a model's ``tokenizer_config.json`` whose
  ``chat_template`` is used: the model's exact template, rendered here with ``add_generation_prompt``.
  ``bos_token`` renders empty: servers and tokenizers add the BOS token themselves when the model uses
  one, as for any raw prompt, and a second BOS would hurt.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arbitrage.errors import ConfigError
from arbitrage.prompts import FALLBACK_FORMATS, PromptStyle

logger = logging.getLogger(__name__)

TEMPLATE_NAMES: tuple[str, ...] = ("chatml", *(name for name in FALLBACK_FORMATS if name != "chatml"))


def _chatml(style: PromptStyle, question: str) -> str:
    system = f"<|im_start|>system\n{style.system}<|im_end|>\n" if style.system else ""
    return f"{system}<|im_start|>user\n{style.user(question)}<|im_end|>\n<|im_start|>assistant\n"


def _turn_format(name: str) -> Callable[[PromptStyle, str], str]:
    prefix, suffix = FALLBACK_FORMATS[name]
    return lambda style, question: prefix + style.single_turn(question) + suffix


def _token_text(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("content", ""))
    return "" if value is None else str(value)


def _load_template_file(path: Path) -> tuple[str, str]:
    """(template source, eos token) from a .jinja file or a tokenizer_config.json."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"Cannot read chat template {path}: {exc}") from exc
    if path.suffix != ".json":
        return text, ""
    try:
        config = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}") from exc
    template = config.get("chat_template") if isinstance(config, dict) else None
    if isinstance(template, list):  # named templates: take the default one
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    if not isinstance(template, str) or not template:
        raise ConfigError(f"{path} has no chat_template; pass a template name ({', '.join(TEMPLATE_NAMES)})")
    return template, _token_text(config.get("eos_token"))


@dataclass(frozen=True, slots=True)
class PromptTemplate:
    """A chosen chat template; ``render`` turns a question into the text the answer continues."""

    name: str  # a template name, or the path of the template file
    _render: Callable[[PromptStyle, str], str]

    @classmethod
    def load(cls, template: str) -> PromptTemplate:
        """A template by name or path (see the module docstring)."""
        if template == "chatml":
            return cls(template, _chatml)
        if template in FALLBACK_FORMATS:
            return cls(template, _turn_format(template))
        path = Path(template).expanduser()
        if not path.is_file():
            raise ConfigError(
                f"Unknown chat template {template!r}: use {', '.join(TEMPLATE_NAMES)}, "
                "or the path of a .jinja file or tokenizer_config.json"
            )
        source, eos = _load_template_file(path)
        return cls(str(path), jinja_renderer(source, eos_token=eos, label=str(path)))

    def render(self, style: PromptStyle, question: str) -> str:
        return self._render(style, question)


def jinja_renderer(
    source: str, *, bos_token: str = "", eos_token: str = "", label: str = "chat template"
) -> Callable[[PromptStyle, str], str]:
    """Render a Hugging Face style Jinja chat template (sandboxed), generation prompt on."""
    from jinja2 import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    try:
        compiled = env.from_string(source)
    except TemplateError as exc:
        raise ConfigError(f"Invalid Jinja in {label}: {exc}") from exc

    def render(style: PromptStyle, question: str) -> str:
        variables = {"bos_token": bos_token, "eos_token": eos_token, "add_generation_prompt": True}
        try:
            return compiled.render(messages=style.messages(question), **variables)
        except TemplateError as exc:  # e.g. a template without a system role
            if not style.system:
                raise ConfigError(f"{label} failed to render: {exc}") from exc
            logger.warning("%s failed (%s); folding the system text into the user turn", label, exc)
        messages = [{"role": "user", "content": style.single_turn(question)}]
        try:
            return compiled.render(messages=messages, **variables)
        except TemplateError as exc:
            raise ConfigError(f"{label} failed to render: {exc}") from exc

    return render
