"""`obskit issues` fails with one line: exit 2 for usage and configuration, exit 1 when the server refuses or
is out of reach."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.integration.issues.conftest import Run
from tests.integration.workers.conftest import free_port

CASES = [
    ("no token", ["--user-id", "42"], {"SENTRY_AUTH_TOKEN": None}, 2, "obskit: SENTRY_AUTH_TOKEN='' is invalid"),
    ("no project", ["--user-id", "42"], {"SENTRY_PROJECT": None}, 2, "obskit: SENTRY_PROJECT='' is invalid"),
    ("bad since", ["--since", "last week"], {}, 2, "obskit: --since='last week' is invalid: expected a duration"),
    ("bad tag", ["--tag", "user_id"], {}, 2, "obskit: --tag='user_id' is invalid: expected key=value"),
    ("wrong token", ["--user-id", "42"], {"SENTRY_AUTH_TOKEN": "0" * 40}, 1, "refused the API token (HTTP 401)"),
    ("wrong project", ["--user-id", "42"], {"SENTRY_PROJECT": "987654"}, 1, "check SENTRY_ORG / SENTRY_PROJECT"),
    ("wrong project kind", ["--user-id", "42"], {"OBSKIT_SENTRY_API": "sentry", "SENTRY_ORG": "acme"}, 1, "(HTTP 404)"),
]


@pytest.mark.parametrize(("args", "env", "code", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_failure_is_one_line_and_its_exit_code(
    obskit: Callable[..., Run], args: list[str], env: dict[str, str | None], code: int, message: str
) -> None:
    run = obskit("issues", *args, env=env)
    assert (run.code, run.stdout) == (code, "")
    assert run.stderr.count("\n") == 1, run.stderr
    assert message in run.stderr


def test_an_unreachable_server_is_one_line_and_exit_1(obskit: Callable[..., Run]) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    run = obskit("issues", "--user-id", "42", env={"SENTRY_URL": url})
    assert run.code == 1
    assert run.stderr == f"obskit: {url} unreachable: [Errno 111] Connection refused\n"
