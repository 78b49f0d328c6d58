"""Run an app with uvicorn in a background thread on a loopback port (tests, benchmarks, notebooks)."""

from __future__ import annotations

import threading
import time
from types import TracebackType

import uvicorn
from fastapi import FastAPI

from arbitrage.errors import ArbitrageError


class BackgroundServer:
    """``with BackgroundServer(app) as server: httpx.get(server.url + "/health")``.

    Binds ``host`` (127.0.0.1) on ``port`` (0: a free port, read back after startup). Leaving the block
    shuts the server down: open requests get ``graceful_timeout`` seconds, then are cancelled; the app's
    shutdown stops running solves at their next step and waits for them.
    """

    def __init__(
        self,
        app: FastAPI,
        host: str = "127.0.0.1",
        port: int = 0,
        startup_timeout: float = 120.0,
        graceful_timeout: int = 5,
    ) -> None:
        self.app = app
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            lifespan="on",
            timeout_graceful_shutdown=graceful_timeout,  # then open streams are cancelled
        )
        self.server = uvicorn.Server(config)
        self.host = host
        self.port = port
        self.startup_timeout = startup_timeout
        self._thread = threading.Thread(target=self.server.run, name="arbitrage-server", daemon=True)

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321`` (the OpenAI base URL is this + ``/v1``)."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + self.startup_timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise ArbitrageError(f"The server did not start on {self.host}:{self.port}")
            time.sleep(0.02)
        sockets = [s for server in self.server.servers for s in server.sockets]
        self.port = sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=60)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
