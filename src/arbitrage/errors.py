"""User-facing errors.

Every error the library raises on bad input derives from :class:`ArbitrageError`, whose message is
written for a person: it names the file, model, server or parameter at fault and what to do about it.
The CLI prints it as one line and exits non-zero; the server turns it into an OpenAI-shaped error body.
"""

from __future__ import annotations

from collections.abc import Callable


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


class RouterError(ArbitrageError):
    """Router data, training options or a saved router folder are unusable."""


class PolicyOptionError(ConfigError):
    """A routing policy's option is unknown, missing, out of range or clashes with another.

    The message is a template whose ``{name}`` fields stand for the options it is about (``options``),
    so each front end spells them its own way: the library as the option names (``tau``), the CLI as its
    flags (``--tau``), the server as its settings fields (``policy_options.tau``); see :meth:`render`.
    """

    def __init__(self, template: str, *options: str) -> None:
        self.template = template  # str.format template with a {name} field per entry of ``options``
        self.options = options  # the option names at fault, in the order they appear
        super().__init__(self.render(str))

    def render(self, spell: Callable[[str], str]) -> str:
        """The message with each option name spelled by ``spell`` (e.g. ``lambda n: "--" + n``)."""
        return self.template.format(**{name: spell(name) for name in self.options})
