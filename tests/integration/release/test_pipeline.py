""".gitlab-ci.yml's release and deploy jobs, run for real by gitlab-ci-local against the Sentry-API recorder.

Each test runs the project's own pipeline file and ci/ scripts, copied into a throwaway git repository
(three commits, an ``origin`` remote, on the default branch ``main``), with gitlab-ci-local's shell
executor and the sentry-cli the dev extra installs (the version the file's image pins).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from sentry_recorder import ORG, PROJECT, ROOT, SentryRecorder, git

from observability.config import Settings
from observability.sentry_api import StoredEvent, client
from tests.helpers import wait_for_event

REMOTE = "https://gitlab.example.com/acme/payments.git"
SERVICE = "payments"  # gitlab-ci-local derives CI_PROJECT_NAME, and so SERVICE_NAME, from the remote
COMMITS = ("Add the payments worker", "Retry declined cards once", "Tag events with the card network")

# What sentry-cli 2.58.6 calls, in order, for the release job (set-commits --local) and the deploy job.
LOCAL_CALLS = [
    "POST /api/0/projects/{org}/{project}/releases/",  # releases new
    "GET /api/0/organizations/{org}/repos/",  # set-commits: which repositories the integration knows
    "POST /api/0/projects/{org}/{project}/releases/",  # set-commits: makes sure the release exists
    "GET /api/0/organizations/{org}/releases/{release}/previous-with-commits/",  # where the history starts
    "PUT /api/0/organizations/{org}/releases/{release}/",  # the commits, read from the local clone
    "PUT /api/0/projects/{org}/{project}/releases/{release}/",  # releases finalize
    "POST /api/0/organizations/{org}/releases/{release}/deploys/",  # deploys new
]

# The app the deploy job starts: obskit set up from the environment the job hands over; one event.
APP = """\
import sys
import observability as obs

obs.init("payments-worker")
event_id = obs.capture_message("payments-worker deployed", "info")
obs.flush(10)
open(sys.argv[1], "w").write(event_id or "")
"""

# Stands for the Docker CLI in the build job: a registry of image tags, each file holding the
# SENTRY_RELEASE its image was built with; `builds` lists every image built, in order.
FAKE_DOCKER = """\
#!/bin/sh
set -eu
registry={registry}
image_file() {{ printf '%s/%s' "$registry" "$(printf '%s' "$1" | tr '/:' '__')"; }}
case "$1" in
    login) cat > /dev/null ;;
    manifest) [ "$2" = inspect ] && [ -f "$(image_file "$3")" ] ;;
    build)
        release=$(printf '%s\\n' "$@" | sed -n 's/^SENTRY_RELEASE=//p')
        tag=$(printf '%s\\n' "$@" | sed -n '/^--tag$/{{n;p;}}')
        printf '%s\\n' "$release" > "$(image_file "$tag")"
        printf '%s\\n' "$tag" >> "$registry/builds" ;;
    push) [ -f "$(image_file "$2")" ] ;;
    *) echo "fake docker: $1 is not expected" >&2; exit 2 ;;
esac
"""

# Stands for `docker compose --env-file deploy.env up`: the app runs with what the image carries
# (SENTRY_RELEASE, baked in at build) and what compose passes (SENTRY_ENVIRONMENT); its event's id is
# written to <events>/<environment>.
STACK = """\
import os
import sys
from pathlib import Path

registry, events = Path(sys.argv[1]), Path(sys.argv[2])
env = dict(line.split("=", 1) for line in Path("deploy.env").read_text().splitlines() if line)
image = registry / env["OBSKIT_IMAGE"].replace("/", "_").replace(":", "_")
os.environ["SENTRY_RELEASE"] = image.read_text().strip()  # the image's, whatever the job's is
os.environ["SENTRY_ENVIRONMENT"] = env["SENTRY_ENVIRONMENT"]

import observability as obs

obs.init("payments-worker")
event_id = obs.capture_message("payments-worker deployed", "info")
obs.flush(10)
(events / env["SENTRY_ENVIRONMENT"]).write_text(event_id or "")
"""


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository holding the project's pipeline file and scripts, three commits deep, on main."""
    path = tmp_path / "payments"
    path.mkdir()
    shutil.copy(ROOT / ".gitlab-ci.yml", path / ".gitlab-ci.yml")
    shutil.copytree(ROOT / "ci", path / "ci")
    git(path, "init", "-q", "-b", "main")
    git(path, "remote", "add", "origin", REMOTE)
    git(path, "add", ".gitlab-ci.yml", "ci")
    for n, message in enumerate(COMMITS):
        (path / f"change{n}.txt").write_text(message)
        git(path, "add", f"change{n}.txt")
        git(path, "commit", "-q", "-m", message)
    # origin/HEAD names the default branch, as in a clone: gitlab-ci-local reads it for CI_DEFAULT_BRANCH.
    git(path, "update-ref", "refs/remotes/origin/main", "HEAD")
    git(path, "symbolic-ref", "refs/remotes/origin/HEAD", "refs/remotes/origin/main")
    return path


def run_jobs(
    gitlab_ci_local: str,
    sentry_cli: str,
    repo: Path,
    recorder: SentryRecorder,
    *jobs: str,
    variables: dict[str, str] | None = None,
    unset: tuple[str, ...] = (),
    bin_dir: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``jobs`` with gitlab-ci-local; sentry-cli's variables point at the recorder (minus ``unset``);
    commands in ``bin_dir`` come first on PATH."""
    merged = {**recorder.env(), **(variables or {})}
    argv = [gitlab_ci_local, *jobs, "--force-shell-executor", "--no-color"]
    for name, value in merged.items():
        if name not in unset:
            argv += ["--variable", f"{name}={value}"]
    path = [str(bin_dir)] if bin_dir else []
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SENTRY_", "CI_", "GITLAB_"))},
        "PATH": os.pathsep.join([*path, str(Path(sentry_cli).parent), os.environ["PATH"]]),
        # Anything that tries the internet (an update check, sentry.io) goes through the recorder, refused.
        "HTTPS_PROXY": recorder.url,
        "HTTP_PROXY": recorder.url,
        "NO_PROXY": "127.0.0.1,localhost",
    }
    return subprocess.run(argv, cwd=repo, env=env, capture_output=True, text=True, timeout=180, check=False)


def expected(calls: list[str], release: str) -> list[str]:
    return [c.format(org=ORG, project=PROJECT, release=release) for c in calls]


def stored_event(sentry_server, event_id: str) -> StoredEvent:
    """The event as the Sentry-compatible server stored it."""
    assert event_id, "the app sent no event"
    env = {
        "SENTRY_URL": sentry_server.url,
        "SENTRY_AUTH_TOKEN": sentry_server.token,
        "SENTRY_PROJECT": sentry_server.project,
        "OBSKIT_SENTRY_API": sentry_server.api,
    }
    api = client(Settings.from_env(env, service="release-test"))
    try:
        return wait_for_event(api, event_id)
    finally:
        api.close()


def test_release_and_deploy_jobs_create_set_commits_finalize_and_deploy_in_order(
    gitlab_ci_local: str, sentry_cli: str, repo: Path, recorder: SentryRecorder, sentry_server, tmp_path: Path
) -> None:
    (tmp_path / "app.py").write_text(APP)
    event_file = tmp_path / "event_id"
    head = git(repo, "rev-parse", "HEAD")
    release = f"{SERVICE}@{head[:8]}"

    started = time.monotonic()
    result = run_jobs(
        gitlab_ci_local,
        sentry_cli,
        repo,
        recorder,
        "release",
        "deploy",
        variables={
            "SENTRY_DSN": sentry_server.dsn,
            "DEPLOY_COMMAND": f"{sys.executable} {tmp_path / 'app.py'} {event_file}",
        },
    )
    elapsed = time.monotonic() - started
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert f"release {release}" in output
    print(f"gitlab-ci-local release + deploy: {elapsed:.1f} s")

    # The calls, in order, and nothing else: no other endpoint, no attempt to reach the internet.
    calls = recorder.calls
    assert [c.line for c in calls] == expected(LOCAL_CALLS, release)
    assert {c.user_agent for c in calls} == {"sentry-cli/2.58.6"}

    created, _, _, _, commits, finalized, deploy = calls
    assert created.body["version"] == release
    assert created.body["projects"] == [PROJECT]
    assert commits.body["commits"][0]["id"] == head
    assert [c["message"].strip() for c in commits.body["commits"]] == list(reversed(COMMITS))
    assert finalized.body["dateReleased"]
    assert deploy.body["environment"] == "staging"
    assert deploy.body["dateStarted"] <= deploy.body["dateFinished"]
    assert recorder.releases[release]["dateReleased"]
    assert [d["environment"] for d in recorder.deploys[release]] == ["staging"]

    # The app the deploy started reported that same release and environment to the Sentry-compatible server.
    stored = stored_event(sentry_server, event_file.read_text().strip())
    assert stored.data["release"] == release
    assert stored.data["environment"] == "staging"
    assert stored.tags["env"] == "staging"


def test_release_job_links_commits_through_the_repository_integration_with_auto(
    gitlab_ci_local: str, sentry_cli: str, repo: Path, recorder: SentryRecorder
) -> None:
    recorder.add_repository("acme/payments", "https://gitlab.example.com/acme/payments")
    head = git(repo, "rev-parse", "HEAD")
    release = f"{SERVICE}@{head[:8]}"

    result = run_jobs(
        gitlab_ci_local, sentry_cli, repo, recorder, "release", variables={"SENTRY_REPO_INTEGRATION": "true"}
    )
    assert result.returncode == 0, result.stdout + result.stderr

    calls = recorder.calls
    assert [c.line for c in calls] == expected(
        [
            "POST /api/0/projects/{org}/{project}/releases/",
            "GET /api/0/organizations/{org}/repos/",
            "POST /api/0/projects/{org}/{project}/releases/",
            "PUT /api/0/organizations/{org}/releases/{release}/",  # refs: the repository's head commit
            "PUT /api/0/projects/{org}/{project}/releases/{release}/",
        ],
        release,
    )
    assert calls[3].body == {"refs": [{"repository": "acme/payments", "commit": head, "previousCommit": None}]}


def test_a_commit_deployed_to_staging_then_tagged_is_one_release_with_its_commits_and_two_deploys(
    gitlab_ci_local: str, sentry_cli: str, repo: Path, recorder: SentryRecorder, sentry_server, tmp_path: Path
) -> None:
    # The default branch's pipeline (build, release, deploy to staging), then the tag's on the same
    # commit, as GitLab runs them. The build job runs against a fake registry instead of Docker-in-Docker.
    pipeline = (repo / ".gitlab-ci.yml").read_text()
    assert '  services: ["docker:27-dind"]\n' in pipeline
    (repo / ".gitlab-ci.yml").write_text(pipeline.replace('  services: ["docker:27-dind"]\n', ""))
    registry, events, bin_dir = tmp_path / "registry", tmp_path / "events", tmp_path / "bin"
    for directory in (registry, events, bin_dir):
        directory.mkdir()
    (bin_dir / "docker").write_text(FAKE_DOCKER.format(registry=registry))
    (bin_dir / "docker").chmod(0o755)
    (tmp_path / "stack.py").write_text(STACK)
    head = git(repo, "rev-parse", "HEAD")
    release = f"{SERVICE}@{head[:8]}"
    variables = {
        "SENTRY_DSN": sentry_server.dsn,
        "DEPLOY_COMMAND": f"{sys.executable} {tmp_path / 'stack.py'} {registry} {events}",
        "CI_REGISTRY": "registry.example.com",
        "CI_REGISTRY_USER": "gitlab-ci-token",
        "CI_REGISTRY_PASSWORD": "registry-password",
    }

    for extra in ({}, {"CI_COMMIT_TAG": "v1.4.0"}):
        result = run_jobs(
            gitlab_ci_local,
            sentry_cli,
            repo,
            recorder,
            "build",
            "release",
            "deploy",
            variables={**variables, **extra},
            bin_dir=bin_dir,
        )
        assert result.returncode == 0, result.stdout + result.stderr

    # Each deploy is on a release that has the commits (suspect commits work in production too)...
    deployed = {d["environment"]: version for version, deploys in recorder.deploys.items() for d in deploys}
    assert set(deployed) == {"staging", "production"}
    for environment, version in deployed.items():
        commits = recorder.releases[version].get("commits") or []
        assert [c["message"].strip() for c in commits] == list(reversed(COMMITS)), f"{environment}: {version}"
        assert commits[0]["id"] == head
    # ...and it is one release, made once: the tag's pipeline found it and left its commits alone.
    assert list(recorder.releases) == [release]
    assert [(d["environment"], d.get("name")) for d in recorder.deploys[release]] == [
        ("staging", "main"),
        ("production", "v1.4.0"),
    ]
    # One image, built once, carrying that release; production ran what staging ran.
    built = (registry / "builds").read_text().split()
    assert len(built) == 1
    assert built[0].endswith(f":{head[:8]}")
    # Each environment's events carry the release its deploy was recorded on.
    for environment in ("staging", "production"):
        stored = stored_event(sentry_server, (events / environment).read_text().strip())
        assert stored.data["release"] == release, environment
        assert stored.data["environment"] == environment


def test_a_tag_on_a_commit_never_released_makes_the_commits_release_with_its_commits(
    gitlab_ci_local: str, sentry_cli: str, repo: Path, recorder: SentryRecorder
) -> None:
    head = git(repo, "rev-parse", "HEAD")
    release = f"{SERVICE}@{head[:8]}"
    result = run_jobs(
        gitlab_ci_local,
        sentry_cli,
        repo,
        recorder,
        "release",
        "deploy",
        variables={"CI_COMMIT_TAG": "v1.4.0", "DEPLOY_COMMAND": "true"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert list(recorder.releases) == [release]
    assert [c["id"] for c in recorder.releases[release]["commits"]][:1] == [head]
    assert recorder.releases[release]["dateReleased"]
    assert [(d["environment"], d.get("name")) for d in recorder.deploys[release]] == [("production", "v1.4.0")]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"SENTRY_AUTH_TOKEN": "sntrys_revoked"}, "Invalid token (http status: 401)"),
        ({"SENTRY_ORG": "someone-else"}, "error: Project not found"),
        ({"SENTRY_REPO_INTEGRATION": "yes"}, "SENTRY_REPO_INTEGRATION='yes' is invalid: expected true or false"),
    ],
    ids=["bad-token", "unknown-org", "bad-integration-flag"],
)
def test_a_failing_release_step_fails_the_job_with_its_message(
    gitlab_ci_local: str,
    sentry_cli: str,
    repo: Path,
    recorder: SentryRecorder,
    change: dict[str, str],
    message: str,
) -> None:
    result = run_jobs(gitlab_ci_local, sentry_cli, repo, recorder, "release", variables=change)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert message in output
    assert "FAIL" in output
    assert not any(c.path.endswith("/deploys/") or c.method == "PUT" for c in recorder.calls)


@pytest.mark.parametrize("missing", ["SENTRY_URL", "SENTRY_AUTH_TOKEN", "SENTRY_ORG", "SENTRY_PROJECT"])
def test_a_missing_sentry_variable_fails_the_job_naming_it_before_any_call(
    gitlab_ci_local: str, sentry_cli: str, repo: Path, recorder: SentryRecorder, missing: str
) -> None:
    result = run_jobs(gitlab_ci_local, sentry_cli, repo, recorder, "release", unset=(missing,))
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert f"{missing}: is not set" in output
    assert recorder.calls == []


def test_deploy_without_a_rollout_command_fails_and_records_no_deploy(
    gitlab_ci_local: str, sentry_cli: str, repo: Path, recorder: SentryRecorder
) -> None:
    result = run_jobs(gitlab_ci_local, sentry_cli, repo, recorder, "release", "deploy")
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "DEPLOY_COMMAND: is not set" in output
    assert recorder.deploys == {}


def test_a_failing_rollout_records_no_deploy(
    gitlab_ci_local: str, sentry_cli: str, repo: Path, recorder: SentryRecorder
) -> None:
    result = run_jobs(
        gitlab_ci_local, sentry_cli, repo, recorder, "release", "deploy", variables={"DEPLOY_COMMAND": "exit 3"}
    )
    assert result.returncode != 0, result.stdout + result.stderr
    assert recorder.deploys == {}


def test_the_recorder_catches_any_attempt_to_reach_the_internet(sentry_cli: str, recorder: SentryRecorder) -> None:
    # What makes "no call but the recorded ones" above mean something: sentry-cli honours the proxy
    # variables, so a request to any other host (here one that cannot exist) reaches the recorder.
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SENTRY_")},
        **recorder.env(),
        "SENTRY_URL": "https://sentry.invalid/",
        "HTTPS_PROXY": recorder.url,
        "NO_PROXY": "127.0.0.1,localhost",
    }
    result = subprocess.run(
        [sentry_cli, "releases", "new", "payments@1"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode != 0
    assert [c.line for c in recorder.calls] == ["CONNECT sentry.invalid:443"]


def _listed(gitlab_ci_local: str, repo: Path, *variables: str) -> list[str]:
    argv = [gitlab_ci_local, "--list-csv", "--no-color"]
    for variable in variables:
        argv += ["--variable", variable]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CI_", "GITLAB_"))}
    result = subprocess.run(argv, cwd=repo, env=env, capture_output=True, text=True, timeout=120, check=True)
    rows = [line.split(";") for line in result.stdout.splitlines() if ";" in line]
    return [row[0].strip('"') for row in rows[1:]]


def test_jobs_run_where_they_should(gitlab_ci_local: str, repo: Path) -> None:
    assert _listed(gitlab_ci_local, repo) == ["test", "build", "release", "deploy"]
    assert _listed(gitlab_ci_local, repo, "CI_COMMIT_TAG=v1.4.0") == ["test", "build", "release", "deploy"]
    assert _listed(gitlab_ci_local, repo, "CI_PIPELINE_SOURCE=schedule", "OBSKIT_SCHEDULE=weekly-cleanup") == [
        "cleanup"
    ]
    git(repo, "checkout", "-q", "-b", "feature/retries")
    assert _listed(gitlab_ci_local, repo) == ["test"]


def test_the_release_name_in_ci_is_the_one_the_app_falls_back_to_in_a_checkout(repo: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SENTRY_", "CI_"))}
    in_ci = subprocess.run(
        ["sh", "ci/release-name.sh"],
        cwd=repo,
        env={**env, "SERVICE_NAME": SERVICE, "CI_COMMIT_SHORT_SHA": git(repo, "rev-parse", "HEAD")[:8]},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    in_checkout = subprocess.run(
        ["sh", "ci/release-name.sh"],
        cwd=repo,
        env={**env, "SERVICE_NAME": SERVICE},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    app = subprocess.run(
        [sys.executable, "-c", "from observability.config import Settings; print(Settings.from_env().release)"],
        cwd=repo,
        env={**env, "SERVICE_NAME": SERVICE},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert in_ci == in_checkout == app == f"{SERVICE}@{git(repo, 'rev-parse', 'HEAD')[:8]}"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "SERVICE_NAME is not set"),
        ({"SERVICE_NAME": "acme/payments"}, "has a slash or whitespace"),
    ],
)
def test_the_release_name_script_refuses_what_sentry_would(repo: Path, env: dict[str, str], message: str) -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SENTRY_", "CI_", "SERVICE_NAME"))}
    result = subprocess.run(
        ["sh", "ci/release-name.sh"], cwd=repo, env={**base, **env}, capture_output=True, text=True, check=False
    )
    assert result.returncode == 1
    assert message in result.stderr
    assert result.stdout == ""


class _GitLabLoader(yaml.SafeLoader):
    """YAML with GitLab's ``!reference [job, key]`` tag, kept as the list it names."""


_GitLabLoader.add_constructor("!reference", lambda loader, node: loader.construct_sequence(node))


def test_ci_pins_the_sentry_cli_the_tests_run(sentry_cli: str) -> None:
    pipeline = yaml.load((ROOT / ".gitlab-ci.yml").read_text(), Loader=_GitLabLoader)
    image = pipeline[".sentry-cli"]["image"]["name"]
    installed = subprocess.run([sentry_cli, "--version"], capture_output=True, text=True, check=True).stdout
    assert image == f"getsentry/sentry-cli:{installed.split()[-1]}"
    assert pipeline["variables"]["SENTRY_DISABLE_UPDATE_CHECK"] == "true"
    text = (ROOT / ".gitlab-ci.yml").read_text()
    assert "ALLOW_FAILURE" not in text
    for secret in ("SENTRY_AUTH_TOKEN", "SENTRY_URL", "SENTRY_ORG", "SENTRY_PROJECT"):
        assert secret not in pipeline["variables"]
        assert all(secret not in (job.get("variables") or {}) for job in pipeline.values() if isinstance(job, dict))
