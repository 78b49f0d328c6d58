"""Token-level speculation between models with different tokenizers, at the text level.

A :class:`TextLevelProposer` makes a draft with its own vocabulary a :class:`TokenProposer` for a writer
with another one. Each round it

1. renders the writer's token sequence as text (special tokens written out, so a draft that shares the
   chat markup reads them as its own; the writer's BOS is left out),
2. tokenizes that text in the draft's vocabulary (special tokens parsed, the draft's own BOS) and lets
   the draft propose ``k`` greedy tokens after it (its KV cache keeps the common prefix, so a round
   evaluates only what changed at the tail),
3. writes the proposed tokens out as text and spells that text in the writer's vocabulary *after* the
   writer's last tokens: the writer re-tokenizes the text of its last few tokens with and without the
   proposal; where the former starts with the latter, the rest are the proposed writer tokens.

The writer then verifies those tokens as it does a same-vocabulary proposal: it keeps only its own
argmax at each position, so greedy output stays the writer's text (lossless). A proposal that would
change how the writer's last token is spelt (its text merges with the proposal into another token:
``" 1"`` then ``"2"`` is ``" 12"``) cannot continue the writer's tokens and proposes nothing; the
controller charges such an empty round its proposer seconds as a rejection of all ``k``
(:meth:`SpeculationController.observe_empty`), so a pair whose texts rarely align switches itself off like
any other pair that does not pay.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from arbitrage.errors import ConfigError


@runtime_checkable
class TextProposingModel(Protocol):
    """The draft side: a model that proposes greedy tokens in its own vocabulary and spells them out."""

    name: str

    def tokenize_prompt(self, prompt: str) -> list[int]:
        """Tokens of ``prompt``, special tokens parsed, BOS added as the model wants it."""
        ...

    def propose(self, tokens: list[int], k: int) -> list[int]:
        """Up to ``k`` greedy tokens after ``tokens`` (stopping after an end-of-generation token)."""
        ...

    def text_after(self, tokens: Sequence[int], new: Sequence[int]) -> str:
        """The text ``new`` adds after ``tokens``."""
        ...

    def is_end_of_generation(self, token: int) -> bool: ...


@runtime_checkable
class TextWriterModel(Protocol):
    """The writer side: renders its tokens as text and spells text as its tokens after them."""

    name: str

    def vocabulary_key(self) -> str: ...

    def render(self, tokens: Sequence[int]) -> str:
        """The text of ``tokens``, special tokens written out, a leading BOS left out."""
        ...

    def tokens_after(self, tokens: Sequence[int], text: str) -> list[int]:
        """This model's tokens that spell ``text`` right after ``tokens`` ([] where the text would change
        how the last of ``tokens`` is spelt)."""
        ...


class TextLevelProposer:
    """A draft with another vocabulary as a token proposer for ``writer`` (see the module docstring)."""

    def __init__(self, proposer: TextProposingModel, writer: TextWriterModel) -> None:
        self.proposer = proposer
        self.writer = writer
        self.name = f"{proposer.name} (text level)"

    def vocabulary_key(self) -> str:
        """The writer's: the proposals come out in its vocabulary."""
        return self.writer.vocabulary_key()

    def propose(self, tokens: Sequence[int], k: int) -> list[int]:
        """Up to ``k`` writer tokens the draft proposes after the writer's ``tokens``."""
        if k <= 0:
            return []
        own = self.proposer.tokenize_prompt(self.writer.render(tokens))
        drafted = self.proposer.propose(own, k)
        if drafted and self.proposer.is_end_of_generation(drafted[-1]):
            drafted = drafted[:-1]  # the writer's own end token is its to choose; text cannot spell it
        if not drafted:
            return []
        text = self.proposer.text_after(own, drafted)
        if not text:
            return []
        return self.writer.tokens_after(tokens, text)[:k]


def text_level_proposer(draft: object, writer: object) -> TextLevelProposer:
    """``draft`` proposing for ``writer`` at the text level; a one-line error where either cannot."""
    if not isinstance(draft, TextProposingModel) or not isinstance(writer, TextWriterModel):
        raise ConfigError(
            f"{getattr(draft, 'name', draft)} cannot propose tokens for {getattr(writer, 'name', writer)}: "
            "their vocabularies differ and text-level speculation needs llama.cpp models on both sides"
        )
    return TextLevelProposer(draft, writer)


__all__ = ["TextLevelProposer", "TextProposingModel", "TextWriterModel", "text_level_proposer"]
