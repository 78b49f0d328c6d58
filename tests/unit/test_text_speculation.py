"""Text-level speculation on fakes with two different tokenizers: a character-level writer (with one
merge rule, so a boundary can re-spell a token) and a word-level draft that continues a known text."""

from __future__ import annotations

import re
from collections.abc import Sequence

import pytest

from arbitrage.backends.speculation import SpeculationConfig, SpeculationController, SpeculationStats
from arbitrage.backends.text_speculation import TextLevelProposer, text_level_proposer
from arbitrage.errors import ConfigError

MERGED = 1000  # the writer's one multi-character token: "12"
EOG = 0


class CharWriter:
    """Writer vocabulary: one token per character (its code point), except "12", which is one token."""

    name = "writer"

    def vocabulary_key(self) -> str:
        return "chars"

    def tokenize(self, text: str) -> list[int]:
        out: list[int] = []
        i = 0
        while i < len(text):
            if text.startswith("12", i):
                out.append(MERGED)
                i += 2
            else:
                out.append(ord(text[i]))
                i += 1
        return out

    def render(self, tokens: Sequence[int]) -> str:
        return "".join("12" if t == MERGED else chr(t) for t in tokens)

    def tokens_after(self, tokens: Sequence[int], text: str) -> list[int]:
        tail = self.render(list(tokens)[-8:])
        base, full = self.tokenize(tail), self.tokenize(tail + text)
        return full[len(base) :] if full[: len(base)] == base else []


class WordDraft:
    """Draft vocabulary: whole words (with their leading space) numbered in order of appearance; it
    proposes the continuation of ``script`` after any prefix of it, then its end token."""

    name = "draft"

    def __init__(self, script: str) -> None:
        self.script = script
        self.words: dict[str, int] = {}
        self.calls: list[list[int]] = []

    def _id(self, word: str) -> int:
        return self.words.setdefault(word, len(self.words) + 1)  # 0 is the end token

    def _spell(self, token: int) -> str:
        return next(w for w, i in self.words.items() if i == token)

    def tokenize_prompt(self, prompt: str) -> list[int]:
        return [self._id(w) for w in re.findall(r"\s*\S+|\s+$", prompt)]

    def propose(self, tokens: list[int], k: int) -> list[int]:
        self.calls.append(list(tokens))
        text = "".join(self._spell(t) for t in tokens)
        if not self.script.startswith(text):
            return []
        rest = [self._id(w) for w in re.findall(r"\s*\S+", self.script[len(text) :])]
        return [*rest, EOG][:k]

    def text_after(self, tokens: Sequence[int], new: Sequence[int]) -> str:
        return "".join(self._spell(t) for t in new)

    def is_end_of_generation(self, token: int) -> bool:
        return token == EOG


def writer_tokens(text: str) -> list[int]:
    return CharWriter().tokenize(text)


def test_proposals_come_out_in_the_writer_vocabulary() -> None:
    draft = WordDraft("The cat sat on the mat")
    proposer = TextLevelProposer(draft, CharWriter())
    assert proposer.vocabulary_key() == "chars" and proposer.name == "draft (text level)"
    # the draft reads the writer's text in its own words, proposes two words, the writer spells them
    assert proposer.propose(writer_tokens("The cat"), 2) == writer_tokens(" sat")[:2]
    assert draft.calls[-1] == draft.tokenize_prompt("The cat")
    assert proposer.propose(writer_tokens("The cat"), 20) == writer_tokens(" sat on the mat")[:20]


def test_the_draft_end_token_is_left_to_the_writer() -> None:
    proposer = TextLevelProposer(WordDraft("The cat sat"), CharWriter())
    assert proposer.propose(writer_tokens("The cat"), 5) == writer_tokens(" sat")
    assert proposer.propose(writer_tokens("The cat sat"), 5) == []  # only the end token: nothing


def test_a_proposal_that_would_respell_the_writer_last_token_proposes_nothing() -> None:
    # the writer wrote "... 1"; the draft continues "2 apples": "1" + "2" is the writer's one token "12",
    # so the proposal cannot follow the tokens the writer already chose
    respelling = TextLevelProposer(WordDraft("He has 12 apples"), CharWriter())
    assert respelling.propose(writer_tokens("He has 1"), 3) == []
    # with a space between them nothing merges, and the proposal follows
    proposer = TextLevelProposer(WordDraft("He has 1 2 apples"), CharWriter())
    assert proposer.propose(writer_tokens("He has 1"), 3) == writer_tokens(" 2 ")


def test_zero_k_and_an_empty_proposal_propose_nothing() -> None:
    proposer = TextLevelProposer(WordDraft("abc"), CharWriter())
    assert proposer.propose(writer_tokens("x"), 0) == []
    assert proposer.propose(writer_tokens("zzz"), 3) == []  # the draft has nothing to say


def test_models_without_the_text_methods_are_one_clear_error() -> None:
    class Bare:
        name = "bare"

    with pytest.raises(ConfigError, match="vocabularies differ"):
        text_level_proposer(Bare(), CharWriter())
    with pytest.raises(ConfigError, match=r"text-level speculation needs llama\.cpp"):
        text_level_proposer(WordDraft("a"), Bare())


def test_an_empty_round_is_charged_as_a_rejection_of_all_k() -> None:
    controller = SpeculationController(SpeculationConfig(k_max=4, warmup_rounds=0))
    for _ in range(3):
        controller.observe_plain(0.04)
    controller.observe_round(2, 2, 0.01, 0.05)
    alpha_before = controller.alpha
    assert alpha_before == 1.0
    for _ in range(10):
        controller.observe_plain(0.04)
        controller.observe_empty(2, 0.01)
    assert controller.alpha is not None and controller.alpha < 0.2
    stats = SpeculationStats()
    stats.observe_empty(0.01)
    stats.observe_plain()
    assert stats.to_dict()["empty_rounds"] == 1 and stats.rounds == 0 and stats.proposer_seconds == 0.01
