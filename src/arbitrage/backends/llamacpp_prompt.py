"""A llama.cpp model's prompts: its GGUF chat template (Jinja), or a fallback format, and their tokens."""

from __future__ import annotations

import logging
from typing import Any

from arbitrage.prompts import FALLBACK_FORMATS, PromptStyle

logger = logging.getLogger(__name__)


class ChatPrompts:
    """Renders and tokenises the chat-formatted prompt of a question for one ``Llama`` model.

    ``chat_format`` names a fallback format (``prompts.FALLBACK_FORMATS``); None uses the GGUF's own
    chat template, or the plain format when it has none. ``name`` is the model's name in warnings.
    """

    def __init__(self, llm: Any, name: str, prompt_style: PromptStyle, chat_format: str | None) -> None:
        self.llm = llm
        self.name = name
        self.prompt_style = prompt_style
        self._chat_format = chat_format
        self._formatter = self._make_formatter()
        self._prompt_cache: dict[str, list[int]] = {}

    def set_style(self, style: PromptStyle) -> None:
        """Wrap questions in ``style`` from now on (a judge takes over its model this way)."""
        self.prompt_style = style
        self._prompt_cache = {}

    def token_text(self, token: int) -> str:
        """The text of one token, special tokens spelled out ("" for a negative id)."""
        if token < 0:
            return ""
        return self.llm.detokenize([token], special=True).decode("utf-8", errors="ignore")

    def _make_formatter(self) -> Any:
        if self._chat_format is not None:
            return None
        template = self.llm.metadata.get("tokenizer.chat_template")
        if not template:
            logger.warning(
                "%s has no chat template in its GGUF; using a plain Question/Answer format", self.name
            )
            self._chat_format = "plain"
            return None
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        return Jinja2ChatFormatter(
            template=template,
            eos_token=self.token_text(self.llm.token_eos()),
            bos_token=self.token_text(self.llm.token_bos()),
            add_generation_prompt=True,
        )

    def render(self, question: str) -> str:
        """The model's own chat-formatted prompt for ``question``, ending where the answer begins."""
        if self._formatter is not None:
            try:
                return str(self._formatter(messages=self.prompt_style.messages(question)).prompt)
            except Exception as exc:  # a template that rejects a system role, or other Jinja errors
                logger.warning(
                    "chat template of %s failed (%s); folding the system text into the user turn",
                    self.name,
                    exc,
                )
                messages = [{"role": "user", "content": self.prompt_style.single_turn(question)}]
                return str(self._formatter(messages=messages).prompt)
        prefix, suffix = FALLBACK_FORMATS[self._chat_format or "plain"]
        return prefix + self.prompt_style.single_turn(question) + suffix

    def tokenize(self, prompt: str) -> list[int]:
        """Tokens of a chat-formatted prompt, special tokens parsed, BOS added as the model wants it."""
        bos = self.token_text(self.llm.token_bos())
        add_bos = not (bos and prompt.startswith(bos))
        return list(self.llm.tokenize(prompt.encode("utf-8"), add_bos=add_bos, special=True))

    def tokens(self, question: str) -> list[int]:
        """The tokens of ``question``'s prompt (the last question's are cached)."""
        cached = self._prompt_cache.get(question)
        if cached is None:
            prompt = self.render(question)
            bos = self.token_text(self.llm.token_bos())
            add_bos = not (bos and prompt.startswith(bos))
            cached = self.llm.tokenize(prompt.encode("utf-8"), add_bos=add_bos, special=True)
            self._prompt_cache = {question: cached}  # one question at a time is the common case
        return cached
