"""``obskit cleanup``: resolve (or delete) old and test-made issues on the Sentry-compatible server.

A plan is made first and printed; nothing changes without ``--execute``. Production issues
(environment ``prod`` or ``production``) that are still unresolved or that people commented on are
never touched unless named one by one with ``--issue``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from observability.sentry_api import Issue, ServerAPI, search_query

__all__ = ["PRODUCTION_ENVIRONMENTS", "TEST_TAG", "Decision", "execute", "plan", "render"]

PRODUCTION_ENVIRONMENTS = frozenset({"prod", "production"})
TEST_TAG = ("test", "true")  # what `obskit test-sentry` and the kit's test helpers put on their events
_SEARCH_LIMIT = 1000


@dataclass(frozen=True)
class Decision:
    """What cleanup does with one issue: ``resolve``, ``delete`` or ``skip`` (with the reason)."""

    issue: Issue
    action: str
    environments: tuple[str, ...]
    reason: str = ""


def _is_production(environments: Iterable[str]) -> bool:
    return any(env.strip().lower() in PRODUCTION_ENVIRONMENTS for env in environments)


def _decide(
    api: ServerAPI, issue: Issue, *, delete: bool, named: bool, cutoff: datetime | None, test_only: bool
) -> Decision:
    environments = tuple(sorted(set(api.environments(issue.id))))

    def skip(reason: str) -> Decision:
        return Decision(issue, "skip", environments, reason)

    if cutoff is not None and (issue.last_seen is None or issue.last_seen > cutoff):
        return skip("seen too recently")
    if test_only and named and TEST_TAG[1] not in api.tag_values(issue.id, TEST_TAG[0]):
        return skip("not made by test events (no tag test=true)")
    if not delete and issue.resolved:
        return skip("already resolved")
    if not named and _is_production(environments):
        if not issue.resolved:
            return skip("production issue, unresolved: name it with --issue to clean it up")
        comments = api.comments(issue.id)
        if comments:
            return skip(f"production issue with {len(comments)} comment(s): name it with --issue to clean it up")
    return Decision(issue, "delete" if delete else "resolve", environments)


def plan(
    api: ServerAPI,
    *,
    older_than_days: float | None = None,
    test_only: bool = False,
    delete: bool = False,
    service: str | None = None,
    issue_ids: Sequence[str] = (),
    now: datetime | None = None,
) -> list[Decision]:
    """Decide, for each matching issue, what cleanup would do; changes nothing.

    Without ``issue_ids`` the candidates are the project's issues matching the filters (tag
    ``test=true`` with ``test_only``, tag ``service`` with ``service``); with them, exactly those
    issues, still subject to the filters, and the production guard does not apply to them.
    """
    cutoff = None
    if older_than_days is not None:
        cutoff = (now or datetime.now(UTC)) - timedelta(days=older_than_days)
    if issue_ids:
        candidates = [api.issue(issue_id) for issue_id in dict.fromkeys(issue_ids)]
        if service is not None:
            candidates = [i for i in candidates if service in api.tag_values(i.id, "service")]
    else:
        filters = {"service": service} if service is not None else {}
        if test_only:
            filters[TEST_TAG[0]] = TEST_TAG[1]
        candidates = api.issues(search_query(filters), limit=_SEARCH_LIMIT)
    named = bool(issue_ids)
    return [_decide(api, issue, delete=delete, named=named, cutoff=cutoff, test_only=test_only) for issue in candidates]


_PLANNED = {"resolve": "would resolve", "delete": "would delete", "skip": "skip"}
_DONE = {"resolve": "resolved", "delete": "deleted", "skip": "skip"}


def _line(verb: str, decision: Decision) -> str:
    issue = decision.issue
    envs = ", ".join(decision.environments) or "no environment"
    seen = issue.last_seen.strftime("%Y-%m-%d %H:%M") if issue.last_seen else "never"
    line = f"{verb:<14} {issue.short_id or issue.id}  {issue.title[:80]}  ({envs}; last seen {seen})"
    return f"{line}: {decision.reason}" if decision.reason else line


def _summary(decisions: Sequence[Decision], *, executed: bool) -> str:
    acted = sum(d.action != "skip" for d in decisions)
    skipped = len(decisions) - acted
    if not decisions:
        return "no matching issues"
    if executed:
        return f"{acted} issue(s) cleaned up, {skipped} skipped"
    return f"{acted} issue(s) to clean up, {skipped} skipped; dry run: add --execute to act"


def render(decisions: Sequence[Decision]) -> list[str]:
    """The dry run: one line per issue saying what would happen, and a summary."""
    return [*(_line(_PLANNED[d.action], d) for d in decisions), _summary(decisions, executed=False)]


def execute(api: ServerAPI, decisions: Sequence[Decision], *, echo: Callable[[str], None]) -> list[Decision]:
    """Take the planned actions in order, echoing a line for each issue as it goes, then a summary.

    A ServerAPIError stops at the first action that fails; the lines before it say what was done.
    """
    done = []
    for decision in decisions:
        if decision.action == "resolve":
            api.resolve(decision.issue.id)
        elif decision.action == "delete":
            api.delete(decision.issue.id)
        if decision.action != "skip":
            done.append(decision)
        echo(_line(_DONE[decision.action], decision))
    echo(_summary(decisions, executed=True))
    return done
