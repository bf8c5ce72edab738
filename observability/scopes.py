"""What the app sets on the SDK's scope inside a unit of work stays in that unit.

Sentry's own integrations fork the isolation scope per task and per request, so what ``sentry_sdk``'s
top-level functions set in one task (``set_user``, ``set_tag``, ``set_tags``, ``set_context``,
``set_extra``, ``set_level``, ``add_attachment``, ``set_attribute``, ``add_feature_flag``, the scope's
``fingerprint``) never reaches the next. The kit forks no scope per task or message: the SDK's fork
(of both scopes) costs about 3.5 µs, some 40% on top of what the Kafka runner spends on a message.
Instead:

- a runner's unit (a Celery task attempt, a Kafka message: one at a time on a thread, never
  interleaved) *holds* the isolation scope (:func:`hold`): for the unit's time the scope's fields
  are copies of what they were, so the unit sees what was set before it, as in a fork, and
  :func:`release` puts the originals back, about 0.3 µs;
- an outermost ``bind()``, which may run in asyncio tasks that share one isolation scope, forks it
  (:class:`Isolated`), as the SDK's integrations do.

Not covered: the current scope (``sentry_sdk.set_transaction_name``, ``get_current_scope().set_tag``),
event processors added to the isolation scope, a trace continued on it (``continue_trace``), and
breadcrumbs, which the kit keeps per unit itself.

The fields are the SDK's private ones (sentry-sdk 2.x); the unit tests check them against the installed
SDK through its public functions, so an SDK that renames them fails CI, not production.
"""

from __future__ import annotations

import copy
from types import TracebackType
from typing import Any

import sentry_sdk
from sentry_sdk.scope import Scope

__all__ = ["Held", "Isolated", "changed", "hold", "release", "user_and_tags"]

# The isolation scope, then its user, tags, contexts, extras, level, fingerprint, attachments,
# attributes and feature flags as they were.
Held = tuple[Scope, Any, dict[str, Any], dict[str, Any], dict[str, Any], Any, Any, list[Any], dict[str, Any], Any]

_isolation_scope = Scope.get_isolation_scope


# hold() and release() spell the fields out: a loop over their names (attrgetter, setattr) costs three
# times as much (1.0-1.3 µs against 0.35-0.4 a unit), paid on every Kafka message.
def hold() -> Held:
    """Give the current unit copies of the isolation scope's fields; undo with :func:`release`."""
    scope = _isolation_scope()
    held = (
        scope,
        scope._user,
        scope._tags,
        scope._contexts,
        scope._extras,
        scope._level,
        scope._fingerprint,
        scope._attachments,
        scope._attributes,
        scope._flags,
    )
    scope._tags = held[2].copy()
    scope._contexts = held[3].copy()
    scope._extras = held[4].copy()
    scope._attachments = held[7].copy()
    scope._attributes = held[8].copy()
    if held[9] is not None:  # flags evaluated before the unit (usually none: the SDK makes them on first use)
        scope._flags = copy.deepcopy(held[9])
    return held


def release(held: Held) -> None:
    """Put back what the scope held before :func:`hold`: whatever the unit set is gone."""
    scope = held[0]
    (
        _,
        scope._user,
        scope._tags,
        scope._contexts,
        scope._extras,
        scope._level,
        scope._fingerprint,
        scope._attachments,
        scope._attributes,
        scope._flags,
    ) = held


def changed(held: Held) -> bool:
    """Whether the unit set anything on the held scope: a runner holding it for a batch of messages
    gives the next message a fresh hold only then (0.2 µs a message against 0.45 for a hold per message)."""
    scope = held[0]
    try:
        return _changed(scope, held)
    except Exception:  # a value whose == raises (a numpy array in a context): take it as changed
        return True


def _changed(scope: Scope, held: Held) -> bool:
    return (
        scope._user is not held[1]
        or scope._tags != held[2]
        or scope._contexts != held[3]
        or scope._extras != held[4]
        or scope._level is not held[5]
        or scope._fingerprint is not held[6]
        or scope._attachments != held[7]
        or scope._attributes != held[8]
        or (scope._flags is not held[9] and _flags_differ(scope._flags, held[9]))
    )


def _flags_differ(now: Any, before: Any) -> bool:
    # Flags evaluated before the unit are held as a copy: compared by content (rare: the SDK makes the
    # buffer on first use).
    return now is None or before is None or now.get() != before.get()


def user_and_tags() -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """The isolation scope's user and tags, for an event the kit builds itself (a unit's transaction),
    which the SDK's scope never touches."""
    scope = _isolation_scope()
    return scope._user, scope._tags


class Isolated:
    """``sentry_sdk.isolation_scope()`` for an outermost ``bind()``, except that the scope around it
    still sees the last event captured inside (``sentry_sdk.last_event_id()`` after the block, for an
    error page that shows it)."""

    __slots__ = ("_forked",)

    def __init__(self) -> None:
        self._forked: Any = None

    def __enter__(self) -> None:
        self._forked = sentry_sdk.isolation_scope()
        self._forked.__enter__()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        forked, self._forked = self._forked, None
        event_id = _isolation_scope()._last_event_id
        forked.__exit__(exc_type, exc, tb)
        if event_id is not None:
            _isolation_scope()._last_event_id = event_id
