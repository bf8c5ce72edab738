"""The deployment files checked offline: GitLab's CI schema and the compose spec (both built into
check-jsonschema), promtool and amtool on deploy/, and what the Dockerfile must carry."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml
from sentry_recorder import ROOT

from tests.helpers import wait_for

CHECK_JSONSCHEMA = str(Path(sys.executable).parent / "check-jsonschema")
APP_SERVICES = ("worker", "beat", "consumer", "exporter")


def check_jsonschema(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CHECK_JSONSCHEMA, *args], capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _broken_copy(tmp_path: Path, name: str, old: str, new: str) -> Path:
    text = (ROOT / name).read_text()
    assert old in text
    path = tmp_path / name
    path.write_text(text.replace(old, new, 1))
    return path


def test_pipeline_file_validates_against_gitlabs_ci_schema(tmp_path: Path) -> None:
    args = ["--builtin-schema", "vendor.gitlab-ci", "--data-transform", "gitlab-ci"]
    result = check_jsonschema(*args, str(ROOT / ".gitlab-ci.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    # The same check refuses a broken copy, so it is not waving everything through.
    broken = _broken_copy(tmp_path, ".gitlab-ci.yml", "  stage: deploy\n", "  stage: deploy\n  when: sometimes\n")
    assert check_jsonschema(*args, str(broken)).returncode == 1


def test_compose_file_validates_against_the_compose_spec(tmp_path: Path) -> None:
    result = check_jsonschema("--builtin-schema", "vendor.compose-spec", str(ROOT / "docker-compose.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    broken = _broken_copy(tmp_path, "docker-compose.yml", "    healthcheck:\n", "    health_check:\n")
    assert check_jsonschema("--builtin-schema", "vendor.compose-spec", str(broken)).returncode == 1


def test_compose_runs_the_whole_stack_each_service_with_a_health_check(compose: dict) -> None:
    services = compose["services"]
    assert set(services) == {
        "redis",
        "kafka",
        "worker",
        "beat",
        "consumer",
        "exporter",
        "prometheus",
        "alertmanager",
        "sentry-bridge",
        "bugsink",
    }
    for name, service in services.items():
        test = service.get("healthcheck", {}).get("test")
        assert test, f"{name} has no health check"
        assert test[0] in {"CMD", "CMD-SHELL"}, name
    assert services["worker"]["command"][:4] == ["celery", "-A", "workers", "worker"]
    assert "celery -A workers inspect ping" in services["worker"]["healthcheck"]["test"][1]
    assert services["beat"]["command"][:4] == ["celery", "-A", "workers", "beat"]
    assert services["consumer"]["command"][:4] == ["python", "-m", "consumers", "run"]
    assert "http://127.0.0.1:8001/healthz" in services["consumer"]["healthcheck"]["test"][-1]
    assert services["exporter"]["command"][:2] == ["obskit", "exporter"]
    assert "/healthz" in services["exporter"]["healthcheck"]["test"][-1]
    assert services["sentry-bridge"]["command"][:2] == ["obskit", "sentry-bridge"]
    assert "http://alertmanager:9093" in services["sentry-bridge"]["command"]
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper
    assert services["bugsink"]["image"].startswith("bugsink/bugsink:")


def test_compose_app_services_run_the_deployed_image_with_its_release(compose: dict) -> None:
    for name in APP_SERVICES:
        service = compose["services"][name]
        assert service["image"] == "${OBSKIT_IMAGE:-obskit:dev}", name
        # The image carries SENTRY_RELEASE; an environment entry could only contradict it.
        assert "SENTRY_RELEASE" not in service["environment"], name
        assert service["environment"]["SENTRY_ENVIRONMENT"] == "${SENTRY_ENVIRONMENT:-development}", name
        assert service["environment"]["SERVICE_NAME"] == f"obskit-{name}", name
    # The names the deploy job writes to deploy.env are the ones compose reads.
    deploy_script = "\n".join(_pipeline()["deploy"]["script"])
    for variable in ("SENTRY_RELEASE", "SENTRY_ENVIRONMENT", "OBSKIT_IMAGE"):
        assert f"{variable}=" in deploy_script


def test_prometheus_and_alertmanager_read_their_config_from_deploy(compose: dict) -> None:
    services = compose["services"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in services["prometheus"]["volumes"]
    assert "./deploy/alertmanager:/etc/alertmanager:ro" in services["alertmanager"]["volumes"]
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), volume
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    assert config["rule_files"] == ["/etc/prometheus/rules/*.yml"]  # where `obskit alerts rules` writes
    assert (ROOT / "deploy/prometheus/rules").is_dir()


def _binary(name: str, package: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if found is None:
        message = f"{name} not found: run `obskit devstack install` (Debian package {package})"
        if os.environ.get("OBSKIT_REQUIRE_SERVICES") == "1":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return found


def test_promtool_and_amtool_accept_the_deploy_config() -> None:
    promtool = _binary("promtool", "prometheus")
    amtool = _binary("amtool", "prometheus-alertmanager")
    for argv in (
        [promtool, "check", "config", "--syntax-only", str(ROOT / "deploy/prometheus/prometheus.yml")],
        [amtool, "check-config", str(ROOT / "deploy/alertmanager/alertmanager.yml")],
    ):
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, result.stdout + result.stderr


def _stages(dockerfile: str) -> list[list[str]]:
    """The Dockerfile's instructions (continuation lines joined), split into build stages."""
    joined = re.sub(r"\\\n", " ", dockerfile)
    stages: list[list[str]] = []
    for raw in joined.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append([])
        stages[-1].append(line)
    return stages


def test_dockerfile_is_multi_stage_non_root_and_bakes_in_the_release() -> None:
    stages = _stages((ROOT / "Dockerfile").read_text())
    assert len(stages) >= 2
    final = stages[-1]
    assert final[0] == "FROM python:3.11-slim"
    assert "ARG SENTRY_RELEASE" in final
    assert any(re.match(r"ENV SENTRY_RELEASE=\$\{SENTRY_RELEASE\}", line) for line in final)
    users = [line.split()[1] for line in final if line.startswith("USER ")]
    assert users, "the final stage must not run as root"
    assert users[-1].split(":")[0] not in {"0", "root"}
    build = "\n".join(_pipeline()["build"]["script"])
    assert '--build-arg SENTRY_RELEASE="$SENTRY_RELEASE"' in build


def _pipeline() -> dict:
    class Loader(yaml.SafeLoader):
        pass

    Loader.add_constructor("!reference", lambda loader, node: loader.construct_sequence(node))
    return yaml.load((ROOT / ".gitlab-ci.yml").read_text(), Loader=Loader)


def test_prometheus_scrapes_every_service_that_serves_metrics(compose: dict) -> None:
    # A service with a metrics port that Prometheus does not scrape has alerts that can never fire.
    serving = {
        f"{name}:{value}"
        for name, service in compose["services"].items()
        for key, value in (service.get("environment") or {}).items()
        if key.endswith("_METRICS_PORT")
    }
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    scraped = {target for job in config["scrape_configs"] for c in job["static_configs"] for target in c["targets"]}
    assert serving == {"consumer:8001", "worker:8002"}
    assert serving <= scraped


def test_prometheus_gives_its_alerts_the_env_the_apps_run_in(compose: dict) -> None:
    # Kafka and Celery metrics have no env label; one compose stack runs one env (the pipeline deploys it
    # as staging or production), which Prometheus adds to every alert it sends.
    prometheus = compose["services"]["prometheus"]
    assert "--enable-feature=expand-external-labels" in prometheus["command"]
    assert (
        prometheus["environment"]["SENTRY_ENVIRONMENT"]
        == compose["services"]["consumer"]["environment"]["SENTRY_ENVIRONMENT"]
    )
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    assert config["global"]["external_labels"] == {"env": "${SENTRY_ENVIRONMENT}"}


def test_an_alert_without_an_env_reaches_alertmanager_with_the_stacks(
    compose: dict, alertmanager_url: str, tmp_path: Path
) -> None:
    """The deploy's global section and the compose's flags, on the real Prometheus and Alertmanager."""
    from observability.devstack._base import free_port

    binary = _binary("prometheus", "prometheus")
    name = f"ObskitDeployEnv{os.getpid()}"
    rules = tmp_path / "rules.yml"
    rules.write_text(
        yaml.safe_dump(
            {
                "groups": [
                    {
                        "name": "deploy-env",
                        "rules": [
                            {"alert": name, "expr": "vector(1)", "labels": {"service": "lag"}},
                            {"alert": name, "expr": "vector(1)", "labels": {"service": "slo", "env": "own"}},
                        ],
                    }
                ]
            }
        )
    )
    deployed = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())["global"]
    config = tmp_path / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {**deployed, "scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(rules)],
                "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager_url.split("//")[1]]}]}]},
            }
        )
    )
    flags = [f for f in compose["services"]["prometheus"]["command"] if f.startswith("--enable-feature")]
    port = free_port()
    argv = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp_path / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        # The first send can go before Alertmanager is discovered (dropped): the next one in a second, not 1m.
        "--rules.alert.resend-delay=1s",
        *flags,
    ]
    with (tmp_path / "prometheus.log").open("w") as log:
        server = subprocess.Popen(
            argv, env={**os.environ, "SENTRY_ENVIRONMENT": "production"}, stdout=subprocess.DEVNULL, stderr=log
        )
    try:

        def sent() -> dict[str, str] | None:
            alerts = httpx.get(f"{alertmanager_url}/api/v2/alerts", timeout=5).json()
            found = {a["labels"]["service"]: a["labels"].get("env") for a in alerts if a["labels"]["alertname"] == name}
            return found if len(found) == 2 else None

        envs = wait_for(sent, timeout_s=60, what="the two alerts at Alertmanager")
        assert envs == {"lag": "production", "slo": "own"}
    finally:
        server.terminate()
        server.wait(10)
