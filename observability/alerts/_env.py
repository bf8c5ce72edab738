"""Settings for the alerting commands from the environment: plain values, secrets given as ``VAR`` or
as a file named by ``VAR_FILE`` (mounted from a vault), durations; a bad one is a ConfigError naming it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from observability.errors import ConfigError
from observability.slo.windows import parse_duration


class Env:
    """Reads ``OBSKIT_ALERT_*`` settings: plain values, secrets (``VAR`` or ``VAR_FILE``), checked forms."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ

    def get(self, name: str) -> str | None:
        raw = self.environ.get(name, "").strip()
        return raw or None

    def secret(self, name: str, expected: str) -> str | None:
        value = self.get(name)
        if value is not None:
            return value
        variable = f"{name}_FILE"
        path = self.get(variable)
        if path is None:
            return None
        try:
            content = Path(path).read_text().strip()
        except OSError as exc:
            raise ConfigError(variable, path, f"a readable file holding {expected} ({exc.strerror})") from None
        if not content:
            raise ConfigError(variable, path, f"a file holding {expected}, not an empty one")
        return content

    def require(self, name: str, expected: str, *, needed_by: str) -> str:
        value = self.get(name)
        if value is None:
            raise ConfigError(name, "", f"{expected} (needed with {needed_by})")
        return value

    def duration(self, name: str, default: str) -> int:
        raw = self.get(name) or default
        try:
            return parse_duration(raw)
        except ValueError:
            raise ConfigError(name, raw, "a duration such as 30m or 1h") from None
