"""Questions from chat messages and prompts; answer text from steps, cut at stop sequences."""

from __future__ import annotations

from typing import Any

import pytest

from arbitrage.server.errors import APIError
from arbitrage.server.schemas import ChatMessage
from arbitrage.server.text import AnswerText, chat_question, completion_question, stop_sequences


def msgs(*items: tuple[str, Any]) -> list[ChatMessage]:
    return [ChatMessage.model_validate({"role": role, "content": content}) for role, content in items]


CONVERSATION = msgs(
    ("system", "Be brief."),
    ("user", "I have 3 apples."),
    ("assistant", "Noted."),
    ("user", "I buy 2 more. How many now?"),
)


def test_single_user_message_is_the_question_in_every_mode() -> None:
    for mode in ("fold", "ignore", "reject"):
        assert chat_question(msgs(("user", "  What is 2+2? ")), mode) == "What is 2+2?"  # type: ignore[arg-type]


def test_fold_puts_instructions_then_earlier_turns_before_the_question() -> None:
    question = chat_question(CONVERSATION, "fold")
    assert question == (
        "Be brief.\n\n"
        "Earlier conversation:\nUser: I have 3 apples.\nAssistant: Noted.\n\n"
        "I buy 2 more. How many now?"
    )


def test_ignore_keeps_only_the_last_user_message() -> None:
    assert chat_question(CONVERSATION, "ignore") == "I buy 2 more. How many now?"


def test_reject_refuses_context() -> None:
    with pytest.raises(APIError) as info:
        chat_question(CONVERSATION, "reject")
    assert info.value.status == 400 and "single user message" in info.value.message


def test_text_parts_are_joined_and_other_parts_refused() -> None:
    parts = [{"type": "text", "text": "What is"}, {"type": "text", "text": "2+2?"}]
    assert chat_question(msgs(("user", parts)), "fold") == "What is\n2+2?"
    image = [{"type": "image_url", "image_url": {"url": "http://x/y.png"}}]
    with pytest.raises(APIError) as info:
        chat_question(msgs(("user", image)), "fold")
    assert "image_url" in info.value.message and info.value.param == "messages.0.content.0"


@pytest.mark.parametrize(
    ("messages", "needle"),
    [
        (msgs(("user", "q"), ("assistant", "partial")), "last message must come from the user"),
        (msgs(("user", "   ")), "last user message is empty"),
        (msgs(("tool", "result"), ("user", "q")), "'tool' messages"),
    ],
)
def test_unanswerable_conversations_are_400(messages: list[ChatMessage], needle: str) -> None:
    with pytest.raises(APIError) as info:
        chat_question(messages, "fold")
    assert info.value.status == 400 and needle in info.value.message


def test_completion_prompt_forms() -> None:
    assert completion_question("What is 2+2?") == "What is 2+2?"
    assert completion_question(["What is 2+2?"]) == "What is 2+2?"
    for bad in (["a", "b"], [1, 2, 3], [[1, 2]], "  "):
        with pytest.raises(APIError):
            completion_question(bad)  # type: ignore[arg-type]


def test_stop_sequences_validation() -> None:
    assert stop_sequences(None) == ()
    assert stop_sequences("END") == ("END",)
    assert stop_sequences(["a", "b"]) == ("a", "b")
    with pytest.raises(APIError):
        stop_sequences(["a", "b", "c", "d", "e"])
    with pytest.raises(APIError):
        stop_sequences([""])


def test_answer_text_joins_steps_with_the_separator() -> None:
    answer = AnswerText("\n\n")
    assert answer.add_step("one") == "one"
    assert answer.add_step("two") == "\n\ntwo"
    assert answer.finish() == ""
    assert answer.text == "one\n\ntwo" and not answer.stopped


def test_stop_sequence_cuts_the_answer_and_asks_to_stop() -> None:
    answer = AnswerText("\n\n", ("DONE",))
    sent = answer.add_step("step one")
    sent += answer.add_step("the end DONE and more")
    assert answer.stopped
    assert sent + answer.finish() == "step one\n\nthe end "
    assert answer.add_step("ignored") == ""  # later steps add nothing


def test_stop_sequence_split_across_steps_is_never_half_sent() -> None:
    answer = AnswerText("\n", ("XY\nZ",))
    first = answer.add_step("abc XY")
    assert "XY" not in first  # held back: it could begin the stop sequence
    rest = answer.add_step("Z tail")
    assert answer.stopped
    assert first + rest + answer.finish() == "abc "


def test_held_back_text_is_released_when_it_is_not_a_stop_sequence() -> None:
    answer = AnswerText("\n\n", ("###",))
    sent = [answer.add_step("a ##"), answer.add_step("b"), answer.finish()]
    assert "".join(sent) == "a ##\n\nb"
    assert not answer.stopped
