"""The SLO spec: a YAML file saying, per service and env, what "good enough" is.

```yaml
defaults:                      # apply to every service without an entry of its own
  objective: 99.9              # percent of units that must not be bad
  period: 30d                  # the error budget's period
  bad_outcomes: [error]        # add business_failure to make rule failures burn the budget (only
                               # ok, error, business_failure: the outcomes the ratio's total counts)
  min_events: 100              # below this many units in a window the ratio is shown but never pages
  paging_envs: [prod, production]  # only these envs page; others get tickets (GitLab deploys `production`)
  thresholds:                  # simple extra thresholds, e.g. the teams' "errors < 0.1% over 10m"
    - {name: errors-10m, window: 10m, error_ratio: 0.001}
slos:
  - service: payments-worker   # one entry per service; env "*" (the default) matches every env
    env: production
    objective: 99.95
```
A bad file fails with one line naming the file, the field, the value and the expected form.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NoReturn

import yaml

from observability.errors import ObskitError
from observability.slo.outcomes import COMPLETED, DEFAULT_BAD, Outcome
from observability.slo.windows import TIERS, format_duration, parse_duration

__all__ = ["DEFAULT_PAGING_ENVS", "SLO", "Spec", "SpecError", "Threshold", "load_spec"]

# Both spellings of the env that pages: `production` is what the pipeline deploys (GitLab's and Sentry's
# usual name, handed over as SENTRY_ENVIRONMENT), `prod` the short one many teams use.
DEFAULT_PAGING_ENVS = ("prod", "production")


class SpecError(ObskitError, ValueError):
    """The SLO spec is malformed; the message names the file, the field and what was expected."""


@dataclass(frozen=True)
class Threshold:
    name: str
    window_s: int
    error_ratio: float


@dataclass(frozen=True)
class SLO:
    """The objective for one service in one env (or every env, ``"*"``)."""

    service: str
    env: str = "*"
    objective: float = 99.9
    period_s: int = 30 * 86400
    bad_outcomes: tuple[Outcome, ...] = DEFAULT_BAD
    min_events: int = 100
    paging_envs: tuple[str, ...] = DEFAULT_PAGING_ENVS
    thresholds: tuple[Threshold, ...] = (Threshold("errors-10m", 600, 0.001),)

    @property
    def budget(self) -> float:
        """The share of units allowed to be bad: 1 - objective."""
        return 1.0 - self.objective / 100.0

    def pages(self, env: str) -> bool:
        return env in self.paging_envs


@dataclass(frozen=True)
class Spec:
    defaults: SLO = field(default_factory=lambda: SLO(service="*"))
    slos: tuple[SLO, ...] = ()

    def for_service(self, service: str, env: str) -> SLO:
        """The entry for this service and env: exact env first, then ``*``, then the defaults."""
        exact = wildcard = None
        for slo in self.slos:
            if slo.service == service:
                if slo.env == env:
                    exact = slo
                elif slo.env == "*":
                    wildcard = slo
        return exact or wildcard or replace(self.defaults, service=service, env=env)


_FIELDS = {"service", "env", "objective", "period", "bad_outcomes", "min_events", "paging_envs", "thresholds"}


class _Reader:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, value: object, expected: str) -> NoReturn:
        message = f"{self.source}: {where}={value!r} is invalid: expected {expected}"
        raise SpecError(message) from None

    def slo(self, raw: object, where: str, base: SLO) -> SLO:  # noqa: PLR0912  (one check per field)
        if not isinstance(raw, Mapping):
            self.fail(where, raw, "a mapping of SLO fields")
        unknown = sorted(set(raw) - _FIELDS)
        if unknown:
            self.fail(f"{where}.{unknown[0]}", raw[unknown[0]], f"one of the fields {', '.join(sorted(_FIELDS))}")
        values: dict[str, Any] = {}
        for key in ("service", "env"):
            if key in raw:
                if not isinstance(raw[key], str) or not raw[key]:
                    self.fail(f"{where}.{key}", raw[key], "a non-empty string")
                values[key] = raw[key]
        if "objective" in raw:
            objective = raw["objective"]
            if isinstance(objective, bool) or not isinstance(objective, int | float) or not 0 < objective < 100:
                self.fail(f"{where}.objective", objective, "a percentage between 0 and 100, e.g. 99.9")
            values["objective"] = float(objective)
        if "period" in raw:
            values["period_s"] = self.duration(f"{where}.period", raw["period"], longest=True)
        if "bad_outcomes" in raw:
            values["bad_outcomes"] = self.outcomes(f"{where}.bad_outcomes", raw["bad_outcomes"])
        if "min_events" in raw:
            count = raw["min_events"]
            if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                self.fail(f"{where}.min_events", count, "a whole number >= 0")
            values["min_events"] = count
        if "paging_envs" in raw:
            envs = raw["paging_envs"]
            if not isinstance(envs, list) or not all(isinstance(e, str) and e for e in envs):
                self.fail(f"{where}.paging_envs", envs, "a list of env names, e.g. [prod, production]")
            values["paging_envs"] = tuple(envs)
        if "thresholds" in raw:
            values["thresholds"] = self.thresholds(f"{where}.thresholds", raw["thresholds"])
        return replace(base, **values)

    def duration(self, where: str, value: object, *, longest: bool = False) -> int:
        try:
            seconds = parse_duration(str(value))
        except ValueError:
            self.fail(where, value, "a duration such as 10m, 6h or 30d")
        limit = TIERS[-1].max_window_s
        if longest and seconds > limit:
            self.fail(where, value, f"at most {format_duration(limit)}")
        return seconds

    def outcomes(self, where: str, value: object) -> tuple[Outcome, ...]:
        # Only outcomes in the ratio's total can be bad: bad / total must stay between 0 and 1.
        allowed = ", ".join(o.value for o in COMPLETED)
        if not isinstance(value, list) or not value or not all(v in COMPLETED for v in value):
            left_out = ", ".join(o.value for o in Outcome if o not in COMPLETED)
            self.fail(where, value, f"a non-empty list of outcomes from {allowed} ({left_out} are not in the total)")
        if len(set(value)) != len(value):
            self.fail(where, value, "each outcome once (one named twice would be counted twice)")
        return tuple(Outcome(v) for v in value)

    def thresholds(self, where: str, value: object) -> tuple[Threshold, ...]:
        if not isinstance(value, list):
            self.fail(where, value, "a list of {name, window, error_ratio}")
        result: list[Threshold] = []
        for n, item in enumerate(value):
            here = f"{where}[{n}]"
            if not isinstance(item, Mapping) or set(item) != {"name", "window", "error_ratio"}:
                self.fail(here, item, "a mapping with exactly name, window and error_ratio")
            ratio = item["error_ratio"]
            if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not 0 < ratio < 1:
                self.fail(f"{here}.error_ratio", ratio, "a ratio between 0 and 1, e.g. 0.001 for 0.1%")
            if not isinstance(item["name"], str) or not item["name"]:
                self.fail(f"{here}.name", item["name"], "a non-empty string")
            window = self.duration(f"{here}.window", item["window"], longest=True)
            if any((t.name, t.window_s) == (item["name"], window) for t in result):
                # Two of one name and window would be two equal series: Prometheus refuses the whole scrape.
                self.fail(f"{here}.name", item["name"], "a name no other threshold of the list has with this window")
            result.append(Threshold(item["name"], window, float(ratio)))
        return tuple(result)


def parse_spec(data: object, source: str = "<spec>") -> Spec:
    """Validate a parsed YAML document into a :class:`Spec`."""
    reader = _Reader(source)
    if data is None:
        return Spec()
    if not isinstance(data, Mapping) or set(data) - {"defaults", "slos"}:
        reader.fail("(top level)", data, "a mapping with `defaults` and/or `slos`")
    defaults = reader.slo(data.get("defaults") or {}, "defaults", SLO(service="*"))
    raw_slos = data.get("slos") or []
    if not isinstance(raw_slos, Sequence) or isinstance(raw_slos, str):
        reader.fail("slos", raw_slos, "a list of SLO entries")
    slos = []
    seen: set[tuple[str, str]] = set()
    for n, raw in enumerate(raw_slos):
        slo = reader.slo(raw, f"slos[{n}]", defaults)
        if slo.service == "*":
            reader.fail(f"slos[{n}].service", raw.get("service") if isinstance(raw, Mapping) else raw, "a service name")
        if (slo.service, slo.env) in seen:
            reader.fail(f"slos[{n}]", f"{slo.service}/{slo.env}", "one entry per service and env")
        seen.add((slo.service, slo.env))
        slos.append(slo)
    return Spec(defaults=defaults, slos=tuple(slos))


def load_spec(path: Path | str | None) -> Spec:
    """Read and validate the spec file; None gives the defaults (99.9% over 30d, errors are bad)."""
    if path is None:
        return Spec()
    source = str(path)
    try:
        text = Path(path).read_text()
    except OSError as exc:
        message = f"{source}: cannot read the SLO spec ({exc.strerror})"
        raise SpecError(message) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        message = f"{source}: not valid YAML{where}: {getattr(exc, 'problem', exc)}"
        raise SpecError(message) from None
    return parse_spec(data, source)
