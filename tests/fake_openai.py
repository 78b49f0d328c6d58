"""A small, real OpenAI-compatible HTTP server for tests: scripted tokens, failures on demand.

Not a mock of the client: the ``openai`` library talks to it over a real socket, so retries, timeouts,
streaming, disconnects and error bodies go through the same code paths as against vLLM or llama.cpp.

Prompt logprobs, for verification: ``echo=true`` with ``logprobs`` returns the prompt's tokens (the fake
tokenizer splits blank lines, newlines and space-led words) with their logprobs, top alternatives and
text offsets before the generated token, as OpenAI's legacy API, vLLM and llama-cpp-python do; with
``Script.vllm`` a ``prompt_logprobs`` request field is answered in vLLM's shape (token id -> logprob,
rank, decoded token; ``prompt_token_ids``). With ``Script.document`` the fake is a consistent greedy
model: its text is the document, so a prompt that is a prefix of it continues with the rest, and at each
prompt position its greedy token is the document's next token.
"""

from __future__ import annotations

import json
import re
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Script:
    """What the server does; tests change it between requests."""

    models: list[str] = field(default_factory=lambda: ["tiny"])
    list_models: bool = True  # False: /models answers 404
    tokens: list[str] = field(default_factory=lambda: ["Add", " 2", ".", "\n\n", "Then", " more"])
    finish: str = "stop"  # finish_reason after the last token
    fail_statuses: list[int] = field(default_factory=list)  # popped one per completion request
    retry_after: str | None = None  # Retry-After header sent with failures
    reject_logprobs: bool = False  # answer 400 to requests asking for logprobs
    reject_logprobs_status: int = 400  # 500: as llama-cpp-python started without logits_all
    reject_stream_options: bool = False  # answer 400 to requests with stream_options
    drop_after: int | None = None  # close the stream after this many chunks, without a finish (once)
    usage_every_chunk: bool = False  # vLLM's continuous usage stats
    usage_at_end: bool = True  # honour stream_options.include_usage (llama-cpp-python does not)
    prompt_tokens: int = 40
    cached_tokens: int | None = None
    delay: float = 0.0  # seconds between streamed chunks
    api_key: str | None = None  # require this bearer key
    document: str | None = None  # the model's own greedy text (prompt included); see the module docstring
    echo_logprobs: bool = True  # False: echo returns logprobs of the generated token only (no prompt's)
    vllm: bool = False  # answer vLLM's prompt_logprobs request field
    shifted_echo: bool = False  # echo as llama-cpp-python does for a prompt without BOS: each entry
    # holds the view of the next position, and the generated token is left out
    split_blank_lines: bool = False  # prompts tokenise a blank line before a word as two newlines
    empty_specials: bool = False  # echo special tokens (<|...|>) as empty text, offsets counted without
    # them (llama-cpp-python)


TOKEN = re.compile(r"\n\n|\n|[ \t]*[^\s]+|\s")
SPECIAL = re.compile(r"<\|[^|]*\|>")
AGREE, DISAGREE, GREEDY = -0.25, -3.0, -0.5  # logprobs of a prompt token the model would write, of one
# it would not, and of its own choice there


def tokenize(text: str, split_blank_lines: bool = False) -> list[str]:
    """The fake's tokens: blank lines, newlines and space-led words; they cover ``text`` exactly. With
    ``split_blank_lines`` a blank line before a word is two newline tokens (as GPT-2-style pre-tokenisers,
    SmolLM2's among them, split ``"\n\nWord"``), while the model writes ``"\n\n"`` as one token."""
    tokens = TOKEN.findall(text)
    if not split_blank_lines:
        return tokens
    split: list[str] = []
    for i, token in enumerate(tokens):
        split.extend(["\n", "\n"] if token == "\n\n" and i + 1 < len(tokens) else [token])
    return split


def token_id(text: str) -> int:
    return zlib.crc32(text.encode()) % 100_000


@dataclass
class Seen:
    """What the server received and did."""

    completions: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    chunks_sent: list[int] = field(default_factory=list)  # per streamed request
    disconnects: int = 0  # streams the client closed before the end


class FakeOpenAIServer:
    """Serves ``/v1/models`` and streamed or plain ``/v1/completions`` on 127.0.0.1."""

    def __init__(self) -> None:
        self.script = Script()
        self.seen = Seen()
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                server._get(self)

            def do_POST(self) -> None:
                server._post(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FakeOpenAIServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- handlers ------------------------------------------------------------------------------------

    @staticmethod
    def _json(
        handler: BaseHTTPRequestHandler, status: int, body: Any, headers: dict[str, str] | None = None
    ) -> None:
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.end_headers()
        handler.wfile.write(data)

    def _error(self, handler: BaseHTTPRequestHandler, status: int, message: str) -> None:
        headers = {"Retry-After": self.script.retry_after} if self.script.retry_after else None
        self._json(handler, status, {"error": {"message": message, "type": "error", "code": status}}, headers)

    def _authorised(self, handler: BaseHTTPRequestHandler) -> bool:
        if self.script.api_key is None:
            return True
        if handler.headers.get("Authorization") == f"Bearer {self.script.api_key}":
            return True
        self._error(handler, 401, "Invalid API key")
        return False

    def _get(self, handler: BaseHTTPRequestHandler) -> None:
        if not self._authorised(handler):
            return
        if handler.path.rstrip("/") == "/v1/models" and self.script.list_models:
            data = [{"id": m, "object": "model", "owned_by": "test"} for m in self.script.models]
            self._json(handler, 200, {"object": "list", "data": data})
        else:
            self._error(handler, 404, "Not Found")

    def _post(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length", 0))
        body = json.loads(handler.rfile.read(length) or b"{}")
        with self._lock:
            self.seen.completions.append(body)
            self.seen.headers.append({k.lower(): v for k, v in handler.headers.items()})
            fail = self.script.fail_statuses.pop(0) if self.script.fail_statuses else None
        if not self._authorised(handler):
            return
        if handler.path.rstrip("/") != "/v1/completions":
            self._error(handler, 404, "Not Found")
            return
        if fail is not None:
            self._error(handler, fail, f"scripted failure {fail}")
            return
        if body.get("model") not in self.script.models:
            self._error(handler, 404, f"The model `{body.get('model')}` does not exist.")
            return
        if self.script.reject_logprobs and body.get("logprobs") is not None:
            self._error(
                handler, self.script.reject_logprobs_status, "logprobs is not supported by this server"
            )
            return
        if self.script.reject_stream_options and "stream_options" in body:
            self._error(handler, 400, "Unknown parameter: stream_options.continuous_usage_stats")
            return
        own = self._own_tokens(str(body.get("prompt", "")))
        tokens = own[: body.get("max_tokens") or len(own)]
        capped = len(tokens) < len(own)
        finish = "length" if capped else self.script.finish
        if body.get("echo") and not body.get("stream"):
            self._json(handler, 200, self._echo_completion(body, tokens, finish))
            return
        if not body.get("stream"):
            self._json(handler, 200, self._completion(body, tokens, finish))
            return
        self._stream(handler, body, tokens, finish)

    def _own_tokens(self, prompt: str) -> list[str]:
        """What the model writes after ``prompt``: the rest of the document, else the scripted tokens."""
        document = self.script.document
        if document is not None and document.startswith(prompt):
            return tokenize(document[len(prompt) :])
        return self.script.tokens

    def _prompt_view(self, prompt: str) -> list[tuple[str, int, float, str, float]]:
        """(token, offset, logprob, greedy token, its logprob) per prompt token after the first."""
        tokens = tokenize(prompt, self.script.split_blank_lines)
        rows = []
        offset = len(tokens[0]) if tokens else 0
        for token in tokens[1:]:
            document = self.script.document
            greedy = token
            if document is not None and document.startswith(prompt[:offset]):
                following = tokenize(document[offset:])
                greedy = following[0] if following else ""  # "": the end of the answer
            logprob = AGREE if greedy == token else DISAGREE
            rows.append((token, offset, logprob, greedy, AGREE if greedy == token else GREEDY))
            offset += len(token)
        return rows

    def _echo_completion(self, body: dict[str, Any], tokens: list[str], finish: str) -> dict[str, Any]:
        prompt = str(body["prompt"])
        completion = self._completion(body, tokens, finish)
        choice = completion["choices"][0]
        choice["text"] = prompt + choice["text"]
        rows = self._prompt_view(prompt)
        if body.get("logprobs") is not None and self.script.echo_logprobs and prompt:
            first = tokenize(prompt, self.script.split_blank_lines)[0]
            generated = choice["logprobs"] or {"tokens": [], "token_logprobs": [], "top_logprobs": []}
            choice["logprobs"] = {
                "tokens": [first] + [r[0] for r in rows] + generated["tokens"],
                "token_logprobs": [None] + [r[2] for r in rows] + generated["token_logprobs"],
                "top_logprobs": [None] + [{r[3]: r[4], r[0]: r[2]} for r in rows] + generated["top_logprobs"],
                "text_offset": [0] + [r[1] for r in rows] + [len(prompt) + i for i in range(len(tokens))],
            }
            if self.script.empty_specials:
                logprobs = choice["logprobs"]
                logprobs["tokens"] = [SPECIAL.sub("", token) for token in logprobs["tokens"]]
                logprobs["text_offset"] = [
                    sum(len(token) for token in logprobs["tokens"][:i])
                    for i in range(len(logprobs["tokens"]))
                ]
            if self.script.shifted_echo:
                logprobs = choice["logprobs"]
                kept = len(rows) + 1  # the prompt's tokens
                logprobs["tokens"] = logprobs["tokens"][:kept]
                logprobs["text_offset"] = logprobs["text_offset"][:kept]
                for key in ("token_logprobs", "top_logprobs"):
                    logprobs[key] = [None, *logprobs[key][2 : kept + 1]]
        return completion

    def _usage(self, completion_tokens: int) -> dict[str, Any]:
        usage: dict[str, Any] = {
            "prompt_tokens": self.script.prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": self.script.prompt_tokens + completion_tokens,
        }
        if self.script.cached_tokens is not None:
            usage["prompt_tokens_details"] = {"cached_tokens": self.script.cached_tokens}
        return usage

    def _choice(
        self, body: dict[str, Any], text: str, tokens: list[str], finish: str | None
    ) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": 0, "text": text, "finish_reason": finish, "logprobs": None}
        if body.get("logprobs") is not None and tokens:
            choice["logprobs"] = {
                "tokens": tokens,
                "token_logprobs": [-0.25] * len(tokens),
                "top_logprobs": [{t: -0.25} for t in tokens],
                "text_offset": [0] * len(tokens),
            }
        return choice

    def _completion(self, body: dict[str, Any], tokens: list[str], finish: str) -> dict[str, Any]:
        choice = self._choice(body, "".join(tokens), tokens, finish)
        if self.script.vllm and body.get("prompt_logprobs") is not None:
            prompt = str(body.get("prompt", ""))
            rows = self._prompt_view(prompt)
            choice["prompt_token_ids"] = [
                token_id(t) for t in tokenize(prompt, self.script.split_blank_lines)
            ]
            choice["prompt_logprobs"] = [None] + [
                {
                    str(token_id(r[0])): {
                        "logprob": r[2],
                        "rank": 1 if r[0] == r[3] else 7,
                        "decoded_token": r[0],
                    },
                    str(token_id(r[3])): {"logprob": r[4], "rank": 1, "decoded_token": r[3]},
                }
                for r in rows
            ]
        return {
            "id": "cmpl-test", "object": "text_completion", "created": int(time.time()),
            "model": body["model"], "choices": [choice], "usage": self._usage(len(tokens)),
        }  # fmt: skip

    def _events(self, body: dict[str, Any], tokens: list[str], finish: str) -> Iterator[dict[str, Any]]:
        options = body.get("stream_options") or {}
        for i, token in enumerate(tokens):
            last = i == len(tokens) - 1
            event: dict[str, Any] = {
                "id": "cmpl-test", "object": "text_completion", "created": 0, "model": body["model"],
                "choices": [self._choice(body, token, [token], finish if last else None)],
            }  # fmt: skip
            if self.script.usage_every_chunk and options.get("continuous_usage_stats"):
                event["usage"] = self._usage(i + 1)
            yield event
        if options.get("include_usage") and self.script.usage_at_end:
            yield {"id": "cmpl-test", "object": "text_completion", "created": 0, "model": body["model"],
                   "choices": [], "usage": self._usage(len(tokens))}  # fmt: skip

    def _stream(
        self, handler: BaseHTTPRequestHandler, body: dict[str, Any], tokens: list[str], finish: str
    ) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Connection", "close")
        handler.end_headers()
        drop = self.script.drop_after
        self.script.drop_after = None
        sent = 0
        try:
            for event in self._events(body, tokens, finish):
                if drop is not None and sent >= drop:
                    break
                handler.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                handler.wfile.flush()
                sent += 1
                if self.script.delay:
                    time.sleep(self.script.delay)
            else:
                handler.wfile.write(b"data: [DONE]\n\n")
                handler.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            with self._lock:
                self.seen.disconnects += 1
        with self._lock:
            self.seen.chunks_sent.append(sent)
