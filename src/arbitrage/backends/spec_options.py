"""Per-model options written inside a backend spec: ``hf:PATH?device=cuda&dtype=bfloat16``.

Draft and target often need different settings (a chat template, a device), so options travel with the
spec of the model they belong to rather than as global flags. The option part is ``key=value`` pairs
joined by ``&``, after a ``?``. Each backend declares the keys it knows; an unknown key, or a value of
the wrong type, is a :class:`~arbitrage.errors.ConfigError` naming the spec.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from arbitrage.errors import ConfigError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(slots=True)
class SpecOptions:
    """The ``key=value`` options of one spec; typed getters consume them, ``finish`` rejects leftovers."""

    spec: str  # the whole spec, for error messages
    values: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, spec: str, text: str) -> SpecOptions:
        """Parse ``a=1&b=two`` (``text`` without the leading ``?``)."""
        values: dict[str, str] = {}
        for item in filter(None, text.split("&")):
            key, eq, value = item.partition("=")
            key = key.strip()
            if not eq or not key:
                raise ConfigError(f"Malformed option {item!r} in model spec {spec!r} (use key=value)")
            if key in values:
                raise ConfigError(f"Option {key!r} given twice in model spec {spec!r}")
            values[key] = value.strip()
        return cls(spec, values)

    def text(self, key: str, default: str) -> str:
        return self.values.pop(key, default)

    def optional_text(self, key: str) -> str | None:
        return self.values.pop(key, None)

    def number(self, key: str, default: float, *, minimum: float | None = None) -> float:
        raw = self.values.pop(key, None)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"Option {key}={raw!r} in model spec {self.spec!r} is not a number") from None
        if minimum is not None and value < minimum:
            raise ConfigError(f"Option {key}={raw} in model spec {self.spec!r} must be >= {minimum:g}")
        return value

    def integer(self, key: str, default: int, *, minimum: int | None = None) -> int:
        raw = self.values.pop(key, None)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"Option {key}={raw!r} in model spec {self.spec!r} is not an integer") from None
        if minimum is not None and value < minimum:
            raise ConfigError(f"Option {key}={raw} in model spec {self.spec!r} must be >= {minimum}")
        return value

    def choice(self, key: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.values.pop(key, default)
        if value not in choices:
            raise ConfigError(
                f"Option {key}={value!r} in model spec {self.spec!r} must be one of: {', '.join(choices)}"
            )
        return value

    def flag(self, key: str, default: bool) -> bool:
        raw = self.values.pop(key, None)
        if raw is None:
            return default
        if raw.lower() in _TRUE:
            return True
        if raw.lower() in _FALSE:
            return False
        raise ConfigError(f"Option {key}={raw!r} in model spec {self.spec!r} must be true or false")

    def prefixed(self, prefix: str) -> dict[str, object]:
        """Consume every ``PREFIX<name>=value`` option as ``{name: value}``; values are read as JSON
        (numbers, true/false, quoted strings) and kept as text when they are not JSON."""
        found: dict[str, object] = {}
        for key in [k for k in self.values if k.startswith(prefix) and len(k) > len(prefix)]:
            raw = self.values.pop(key)
            try:
                found[key[len(prefix) :]] = json.loads(raw)
            except json.JSONDecodeError:
                found[key[len(prefix) :]] = raw
        return found

    def finish(self, known: tuple[str, ...]) -> None:
        """Raise if any option was not consumed (a typo, or an option of another backend)."""
        if self.values:
            unknown = ", ".join(sorted(self.values))
            raise ConfigError(
                f"Unknown option(s) {unknown} in model spec {self.spec!r} (known: {', '.join(known)})"
            )
