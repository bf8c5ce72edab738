"""`obskit devstack` as a user runs it: up, status, env, up again, down, with processes checked by pid."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

SERVICES = "redis,alertmanager"


def obskit(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "observability.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        check=False,
    )


def pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture
def stack_dir(tmp_path: Path, services) -> Path:  # the session stack proves the binaries are installed
    directory = tmp_path / "stack"
    missing = obskit("devstack", "status", "--dir", str(directory), "--only", SERVICES)
    assert "Traceback" not in missing.stderr
    yield directory
    obskit("devstack", "down", "--dir", str(directory))


def test_up_status_env_idempotent_up_and_down_leave_nothing_running(stack_dir: Path) -> None:
    up = obskit("devstack", "up", "--dir", str(stack_dir), "--only", SERVICES)
    assert up.returncode == 0, up.stderr

    status = obskit("devstack", "status", "--dir", str(stack_dir), "--only", SERVICES, "--json")
    assert status.returncode == 0, status.stderr
    rows = json.loads(status.stdout)
    assert [(r["name"], r["healthy"]) for r in rows] == [("redis", True), ("alertmanager", True)]
    pids = [r["pid"] for r in rows]
    assert all(pid_alive(pid) for pid in pids)

    env = obskit("devstack", "env", "--dir", str(stack_dir), "--prefix", "OBSKIT_TEST_")
    names = {line.split("=", 1)[0] for line in env.stdout.splitlines()}
    assert names == {"export OBSKIT_TEST_REDIS_URL", "export OBSKIT_TEST_ALERTMANAGER_URL"}

    again = obskit("devstack", "up", "--dir", str(stack_dir), "--only", SERVICES)
    assert again.returncode == 0, again.stderr
    rows_again = json.loads(obskit("devstack", "status", "--dir", str(stack_dir), "--only", SERVICES, "--json").stdout)
    assert [r["pid"] for r in rows_again] == pids, "a second `up` must leave healthy services alone"

    down = obskit("devstack", "down", "--dir", str(stack_dir))
    assert down.returncode == 0, down.stderr
    assert not any(pid_alive(pid) for pid in pids)
    after = obskit("devstack", "status", "--dir", str(stack_dir), "--only", SERVICES, "--json")
    assert after.returncode == 1
    assert not any(r["running"] for r in json.loads(after.stdout))


def test_a_fixed_port_in_use_is_refused_with_one_line(stack_dir: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = obskit(
            "devstack", "up", "--dir", str(stack_dir), "--only", "redis", env={"OBSKIT_DEVSTACK_REDIS_PORT": str(port)}
        )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert f"port {port}" in lines[0]
    assert "OBSKIT_DEVSTACK_REDIS_PORT" in lines[0]


def test_an_unknown_service_is_refused_with_one_line(tmp_path: Path) -> None:
    result = obskit("devstack", "up", "--dir", str(tmp_path), "--only", "mongodb")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "obskit: unknown service mongodb: expected some of redis, kafka, bugsink, alertmanager, prometheus"
    )
