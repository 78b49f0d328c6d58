"""Start llama-cpp-python's OpenAI-compatible server safely on machines whose AMX faults.

``python -m llama_cpp.server`` cannot turn off llama.cpp's extra CPU buffer types, so on virtual machines
that advertise AMX but fault on it (see ``backends/llamacpp_probe.py``) it dies on the first request.
This wrapper takes exactly the same arguments, and in addition:

- ``--model`` may be a named model (``smollm2-135m``), fetched into the model cache if needed;
- the model alias defaults to that name (or the file's stem) instead of the full path, so clients say
  ``openai:http://HOST:PORT/v1#smollm2-135m``;
- ``--logits_all`` defaults to false (true in ``llama_cpp.server``): logits for every position cost
  n_ctx × vocabulary floats and slow evaluation, and are needed only for logprobs; pass
  ``--logits_all true`` for them (``openai:`` specs detect a server without logprobs and stop asking);
- ``--interrupt_requests`` defaults to false (true in ``llama_cpp.server``, where a streamed answer is
  cut short, without a finish reason, as soon as another request arrives: concurrent clients would
  keep interrupting each other);
- requests that leave them out get neutral sampling defaults (``repeat_penalty`` 1.0, ``top_k`` 0,
  ``min_p`` 0, as on vLLM and SGLang) instead of llama-cpp-python's 1.1 / 40 / 0.05, so a step is
  drawn from the model's own distribution, as the in-process llama.cpp backend draws it;
- each model is probed once (or ``ARBITRAGE_LLAMA_EXTRA_BUFTS`` decides) and, when any model of the
  server cannot use the extra buffer types, every model is loaded with them off.

    python -m arbitrage.backends.llamacpp_server --model smollm2-135m --port 8080 --n_ctx 2048

llama-cpp-python's server runs one request at a time per process (a global lock around its single
``Llama``): concurrent clients queue there. Batching servers (vLLM, SGLang, llama.cpp's own C++
``llama-server -np N``) run them together.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from arbitrage.errors import ArbitrageError

logger = logging.getLogger(__name__)


def _resolve_models(model_settings: list[Any]) -> list[Path]:
    """Turn named models into paths (fetching them) and give each a short default alias."""
    from arbitrage.models.registry import NAMED_MODELS
    from arbitrage.models.store import resolve_model_path

    paths = []
    for model in model_settings:
        given = str(model.model)
        path = resolve_model_path(given)
        if not model.model_alias or model.model_alias == given:
            model.model_alias = given if given in NAMED_MODELS else path.stem
        model.model = str(path)
        paths.append(path)
    return paths


NEUTRAL_SAMPLING = {"repeat_penalty": 1.0, "top_k": 0, "min_p": 0.0}


def _neutral_sampling_defaults() -> None:
    """Set the request models' defaults to :data:`NEUTRAL_SAMPLING` (before the app is imported)."""
    from llama_cpp.server import types

    for model in (types.CreateCompletionRequest, types.CreateChatCompletionRequest):
        for name, value in NEUTRAL_SAMPLING.items():
            if name in model.model_fields:
                model.model_fields[name].default = value
        model.model_rebuild(force=True)


def _parse(argv: list[str] | None) -> tuple[Any, list[Any]]:
    from llama_cpp.server.cli import add_args_from_model, parse_model_from_args
    from llama_cpp.server.settings import ConfigFileSettings, ModelSettings, ServerSettings, Settings

    parser = argparse.ArgumentParser(
        description="llama-cpp-python's OpenAI-compatible server, started safely for this machine."
    )
    add_args_from_model(parser, Settings)
    parser.add_argument("--config_file", type=str, help="Path to a JSON or YAML config file to load.")
    args = parser.parse_args(argv)
    config_file = os.environ.get("CONFIG_FILE", args.config_file)
    if config_file:
        path = Path(config_file)
        if not path.is_file():
            raise ArbitrageError(f"Config file {path} not found")
        text = path.read_text()
        if path.suffix in (".yaml", ".yml"):
            import json

            import yaml

            text = json.dumps(yaml.safe_load(text))
        config = ConfigFileSettings.model_validate_json(text)
        return ServerSettings.model_validate(config), list(config.models)
    if not args.model:
        raise ArbitrageError("--model is required (a named model, or the path of a .gguf file)")
    if args.logits_all is None:
        args.logits_all = False
    if args.interrupt_requests is None:
        args.interrupt_requests = False
    if args.flash_attn is None:  # as the in-process backend (ARBITRAGE_LLAMA_FLASH_ATTN), so both agree
        from arbitrage.settings import load_settings

        args.flash_attn = load_settings().llama_flash_attn == "on"
    return parse_model_from_args(ServerSettings, args), [parse_model_from_args(ModelSettings, args)]


def main(argv: list[str] | None = None) -> int:
    """Parse llama_cpp.server's arguments, decide the buffer types, serve until stopped."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        try:
            import uvicorn

            _neutral_sampling_defaults()
            from llama_cpp.server.app import create_app
        except ImportError as exc:
            raise ArbitrageError(
                f"llama-cpp-python's server is not installed ({exc}); pip install 'llama-cpp-python[server]'"
            ) from exc

        from arbitrage.backends.llamacpp import _model_params
        from arbitrage.backends.llamacpp_probe import extra_bufts_allowed
        from arbitrage.settings import load_settings

        server_settings, model_settings = _parse(argv)
        paths = _resolve_models(model_settings)
        settings = load_settings()
        extra_bufts = all(extra_bufts_allowed(path, settings) for path in paths)
        logger.info(
            "serving %s on %s:%s (extra buffer types %s)",
            ", ".join(m.model_alias for m in model_settings),
            server_settings.host,
            server_settings.port,
            "on" if extra_bufts else "off",
        )
        # Every Llama this process creates (the default model now, others when a request switches to
        # them) loads with the chosen buffer types: the patch stays for the life of the server.
        with _model_params(use_extra_bufts=extra_bufts):
            app = create_app(server_settings=server_settings, model_settings=model_settings)
            uvicorn.run(
                app,
                host=os.getenv("HOST", server_settings.host),
                port=int(os.getenv("PORT", server_settings.port)),
                ssl_keyfile=server_settings.ssl_keyfile,
                ssl_certfile=server_settings.ssl_certfile,
            )
    except ArbitrageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """This server run as a subprocess on 127.0.0.1, for tests, benchmarks and scripts.

    ``with ServerProcess("smollm2-135m", log_path) as server:`` starts it, waits until ``/models``
    answers, and stops it on exit; clients use ``openai:{server.base_url}#smollm2-135m``.
    """

    def __init__(self, model: str, log_path: Path, *, port: int | None = None, n_ctx: int = 2048,
                 threads: int = 2, verbose: bool = False, extra: tuple[str, ...] = ()) -> None:  # fmt: skip
        self.model = model
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.log_path = log_path
        self.cmd = [
            sys.executable, "-m", "arbitrage.backends.llamacpp_server", "--model", model,
            "--host", "127.0.0.1", "--port", str(self.port), "--n_ctx", str(n_ctx),
            "--n_threads", str(threads), "--n_threads_batch", str(threads), "--verbose", str(verbose).lower(),
            *extra,
        ]  # fmt: skip
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 300) -> ServerProcess:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"llama.cpp server exited with {self.process.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/models", timeout=2) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"llama.cpp server not ready after {timeout:.0f}s:\n{self.log()}")

    def kill(self) -> None:
        """Kill the server at once (SIGKILL), as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":
    sys.exit(main())
