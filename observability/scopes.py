"""What the app sets on the SDK's scope inside a unit of work stays in that unit.

Sentry's own integrations open an isolation scope per task and per request, so ``sentry_sdk.set_user``,
``set_tag``, ``set_tags``, ``set_context``, ``set_extra`` and ``set_level`` in one task never reach the
next. The kit opens no scope per unit (the SDK's fork costs about 3 µs, a third of what a Kafka message
costs the runner), so without this a user set in one task would be the user of every later event of the
process. Instead:

- a runner's unit (a Celery task attempt, a Kafka message: one at a time on a thread, never
  interleaved) *holds* the isolation scope: the unit works on copies of its user, tags, contexts,
  extras and level, starting with no user (the one set before is not the task's), and :func:`release`
  puts the originals back (about 0.2 µs);
- an outermost ``bind()``, which may run in asyncio tasks that share one isolation scope, forks it
  (``sentry_sdk.isolation_scope()``), as the SDK's integrations do.

The fields are the SDK's private ones (sentry-sdk 2.x); the unit tests check them against the installed
SDK through its public functions, so an SDK that renames them fails CI, not production.
"""

from __future__ import annotations

from typing import Any

from sentry_sdk.scope import Scope

__all__ = ["Held", "hold", "release"]

# The isolation scope, then its user, tags, contexts, extras and level as they were.
Held = tuple[Scope, Any, dict[str, Any], dict[str, Any], dict[str, Any], Any]

_isolation_scope = Scope.get_isolation_scope


def hold() -> Held:
    """Give the current unit copies of the isolation scope's fields, with no user; undo with :func:`release`."""
    scope = _isolation_scope()
    held = (scope, scope._user, scope._tags, scope._contexts, scope._extras, scope._level)
    scope._user = None
    scope._tags = held[2].copy()
    scope._contexts = held[3].copy()
    scope._extras = held[4].copy()
    return held


def release(held: Held) -> None:
    """Put back what the scope held before :func:`hold`: whatever the unit set is gone."""
    scope = held[0]
    _, scope._user, scope._tags, scope._contexts, scope._extras, scope._level = held
