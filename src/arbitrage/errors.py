"""User-facing errors.

Every error the library raises on bad input derives from :class:`ArbitrageError`, whose message is
written for a person: it names the file, model, server or parameter at fault and what to do about it.
The CLI prints it as one line and exits non-zero; the server turns it into an OpenAI-shaped error body.
"""

from __future__ import annotations


class ArbitrageError(Exception):
    """Base error: its ``str()`` is a complete, user-readable sentence."""

    exit_code: int = 2


class ConfigError(ArbitrageError):
    """An invalid parameter or setting (non-positive limit, unknown policy, malformed spec)."""


class ModelNotFoundError(ArbitrageError):
    """A model name is unknown, or a model path does not exist."""


class ModelFileError(ArbitrageError):
    """A model file exists but cannot be used (corrupt, truncated, wrong format, hash mismatch)."""


class FetchError(ArbitrageError):
    """Downloading or assembling a model from its packages failed."""


class BackendError(ArbitrageError):
    """A generator backend failed while producing a step (server unreachable, decode failure)."""


class ScorerError(ArbitrageError):
    """A step scorer (process reward model) failed or was misconfigured (bad spec, server error)."""
