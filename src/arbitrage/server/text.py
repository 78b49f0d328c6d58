"""Text in and out: the question a request asks, and the answer text its steps make.

**Chat messages → question.** The last message must come from the user; its text is the question. How
earlier messages (a system/developer message, earlier turns) are handled is a server setting,
``context_messages``:

- ``fold`` (default): they become context written before the question, so the models see them::

      <system and developer messages, one paragraph each>

      Earlier conversation:
      User: ...
      Assistant: ...

      <last user message>

  The server's own prompt (system prompt + user template asking for step-by-step reasoning) still wraps
  the result: a client's system message cannot replace it, because draft and target format the prompt
  themselves with one prompt style fixed at load time.
- ``ignore``: only the last user message is used.
- ``reject``: anything but exactly one (user) message gets a 400.

Tool and function messages, tool calls and non-text content parts are always refused with a 400.

**Steps → answer text.** :class:`AnswerText` joins accepted steps with the separator and applies the
request's ``stop`` sequences: the answer ends before the first occurrence of any of them, and while
streaming, the last ``len(longest stop) - 1`` characters are held back until it is clear they do not
begin a stop sequence (so a stop sequence split across two steps is never half-sent).
"""

from __future__ import annotations

from arbitrage.server.errors import APIError, bad_request, unsupported
from arbitrage.server.schemas import ChatMessage, TextPart
from arbitrage.server.settings import ContextMessages


def message_text(message: ChatMessage, index: int) -> str:
    """The text of a message: a string, or its text parts joined by newlines."""
    param = f"messages.{index}.content"
    if message.tool_calls or message.function_call:
        raise unsupported(f"messages.{index}.tool_calls", "tool calls are not supported")
    if message.audio:
        raise unsupported(f"messages.{index}.audio", "only text messages are supported")
    content = message.content
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts = []
    for j, part in enumerate(content):
        if not isinstance(part, TextPart):
            raise unsupported(f"{param}.{j}", f"content parts of type '{part.type}' (only text parts)")
        texts.append(part.text)
    return "\n".join(texts)


def chat_question(messages: list[ChatMessage], mode: ContextMessages) -> str:
    """The question a chat request asks (see the module docstring)."""
    for i, message in enumerate(messages):
        if message.role in ("tool", "function"):
            raise unsupported(f"messages.{i}.role", f"'{message.role}' messages (tools are not supported)")
    last = len(messages) - 1
    if messages[last].role != "user":
        raise bad_request(
            f"The last message must come from the user (got '{messages[last].role}'): arbitrage answers "
            "the last user message and cannot continue an assistant message",
            param=f"messages.{last}.role",
        )
    question = message_text(messages[last], last).strip()
    if not question:
        raise bad_request("The last user message is empty", param=f"messages.{last}.content")
    if mode == "ignore" or last == 0:
        return question
    if mode == "reject":
        raise APIError(
            400,
            "This server answers a single user message (context_messages = 'reject'): send only the "
            "question, without system messages or earlier turns",
            param="messages",
            code="unsupported",
        )
    instructions: list[str] = []
    turns: list[str] = []
    for i, message in enumerate(messages[:last]):
        text = message_text(message, i).strip()
        if not text:
            continue
        if message.role in ("system", "developer"):
            instructions.append(text)
        else:
            turns.append(f"{'User' if message.role == 'user' else 'Assistant'}: {text}")
    parts = list(instructions)
    if turns:
        parts.append("Earlier conversation:\n" + "\n".join(turns))
    parts.append(question)
    return "\n\n".join(parts)


def completion_question(prompt: str | list[str] | list[int] | list[list[int]]) -> str:
    """The question of a text completion: its prompt (one string)."""
    if isinstance(prompt, list):
        if len(prompt) != 1 or not isinstance(prompt[0], str):
            raise unsupported("prompt", "token-id prompts and batches of prompts (send one string)")
        prompt = prompt[0]
    assert isinstance(prompt, str)
    if not prompt.strip():
        raise bad_request("The prompt is empty", param="prompt")
    return prompt


def stop_sequences(stop: str | list[str] | None) -> tuple[str, ...]:
    """The request's stop sequences, validated (at most 4, none empty), as OpenAI allows."""
    if stop is None:
        return ()
    stops = [stop] if isinstance(stop, str) else list(stop)
    if len(stops) > 4:
        raise bad_request(f"At most 4 stop sequences are allowed (got {len(stops)})", param="stop")
    if any(not s for s in stops):
        raise bad_request("Stop sequences must not be empty", param="stop")
    return tuple(stops)


class AnswerText:
    """Accumulates accepted steps into the answer, cut at the first stop sequence.

    ``add_step`` returns the text that may be sent now; ``finish`` returns what was held back. Used
    from the solve's worker thread only (one instance per request).
    """

    def __init__(self, separator: str, stops: tuple[str, ...] = ()) -> None:
        self.separator = separator
        self.stops = stops
        self._hold = max((len(s) for s in stops), default=1) - 1
        self._full = ""  # the answer so far (cut at a stop sequence once found)
        self._sent = 0  # characters of _full already returned
        self.stopped = False  # a stop sequence was found: no more steps are wanted
        self.steps = 0

    @property
    def text(self) -> str:
        return self._full

    def add_step(self, step: str) -> str:
        if self.stopped:
            return ""
        self._full += (self.separator if self.steps else "") + step
        self.steps += 1
        cut = min((i for i in (self._full.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            self._full = self._full[:cut]
            self.stopped = True
            return self._release(len(self._full))
        return self._release(max(self._sent, len(self._full) - self._hold))

    def finish(self) -> str:
        return self._release(len(self._full))

    def _release(self, upto: int) -> str:
        chunk = self._full[self._sent : upto]
        self._sent = max(self._sent, upto)
        return chunk
