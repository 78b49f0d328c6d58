"""Arbitrage as an OpenAI-compatible HTTP server (``arbitrage serve``).

``create_app(settings)`` builds the FastAPI app; :class:`BackgroundServer` runs one on a loopback port in
a thread (tests, benchmarks, notebooks). See docs/serving.md for the API.
"""

from arbitrage.server.app import create_app
from arbitrage.server.background import BackgroundServer
from arbitrage.server.jobs import ServerPlan
from arbitrage.server.settings import ServerSettings, load_server_settings

__all__ = ["BackgroundServer", "ServerPlan", "ServerSettings", "create_app", "load_server_settings"]
