from pathlib import Path

import pytest

from observability.config import Settings
from observability.errors import ConfigError

DSN = "https://abcdef0123@sentry.example.com/42"


def settings(**env: str) -> Settings:
    return Settings.from_env({"SERVICE_NAME": "payments-worker", **env})


def test_defaults_without_dsn_leave_sentry_off() -> None:
    s = settings(SENTRY_RELEASE="payments-worker@1.0")
    assert s.dsn is None
    assert s.environment == "development"
    assert s.traces_sample_rate == 0.0


def test_reads_every_documented_variable() -> None:
    s = settings(
        SENTRY_DSN=DSN,
        SENTRY_ENVIRONMENT="prod",
        SENTRY_RELEASE="payments-worker@1.2.3",
        SENTRY_TRACES_SAMPLE_RATE="0.25",
        SENTRY_PROFILES_SAMPLE_RATE="0.1",
        SENTRY_DEBUG="true",
        LOG_LEVEL="warning",
        OBSKIT_TRACES_SAMPLE_RATES="task:pay=1, topic:payments=0.5",
    )
    assert (s.dsn, s.environment, s.release) == (DSN, "prod", "payments-worker@1.2.3")
    assert (s.traces_sample_rate, s.profiles_sample_rate, s.debug, s.log_level) == (0.25, 0.1, True, "WARNING")
    assert s.sample_rate_for("topic:payments") == 0.5
    assert s.sample_rate_for("task:other") == 0.25


def test_dsn_from_file(tmp_path: Path) -> None:
    secret = tmp_path / "dsn"
    secret.write_text(DSN + "\n")
    assert settings(SENTRY_DSN_FILE=str(secret)).dsn == DSN


@pytest.mark.parametrize(
    ("env", "variable", "expected"),
    [
        ({"SENTRY_TRACES_SAMPLE_RATE": "abc"}, "SENTRY_TRACES_SAMPLE_RATE", "a number from 0.0 to 1.0"),
        ({"SENTRY_TRACES_SAMPLE_RATE": "1.5"}, "SENTRY_TRACES_SAMPLE_RATE", "a number from 0.0 to 1.0"),
        ({"SENTRY_PROFILES_SAMPLE_RATE": "-0.1"}, "SENTRY_PROFILES_SAMPLE_RATE", "a number from 0.0 to 1.0"),
        ({"SENTRY_DSN": "not a dsn"}, "SENTRY_DSN", "a DSN like"),
        ({"SENTRY_DSN": "https://sentry.example.com/42"}, "SENTRY_DSN", "a DSN like"),
        ({"SENTRY_DSN": "https://key@sentry.example.com/abc"}, "SENTRY_DSN", "a DSN like"),
        ({"SENTRY_DSN": "https://key@sentry.example.com:port/1"}, "SENTRY_DSN", "a DSN like"),
        ({"SENTRY_DSN_FILE": "/nonexistent/dsn"}, "SENTRY_DSN_FILE", "a readable file holding the DSN"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL", "one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
        ({"SENTRY_DEBUG": "maybe"}, "SENTRY_DEBUG", "one of 1/0"),
        ({"OBSKIT_TRACES_SAMPLE_RATES": "topic:x"}, "OBSKIT_TRACES_SAMPLE_RATES", "name=rate pairs"),
        ({"OBSKIT_TRACES_SAMPLE_RATES": "topic:x=2"}, "OBSKIT_TRACES_SAMPLE_RATES", "0.0 to 1.0"),
        ({"SERVICE_NAME": "Payments Worker"}, "SERVICE_NAME", "lowercase letters"),
    ],
)
def test_bad_value_names_variable_value_and_expected_form(env: dict[str, str], variable: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        settings(**env)
    message = str(caught.value)
    assert message.startswith(f"{variable}=")
    assert repr(env[variable]) in message
    assert expected in message
    assert "\n" not in message


def test_missing_service_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="SERVICE_NAME"):
        Settings.from_env({})


def test_overrides_win_and_unknown_override_is_rejected() -> None:
    assert settings(SENTRY_ENVIRONMENT="prod").environment == "prod"
    assert Settings.from_env({"SENTRY_ENVIRONMENT": "prod"}, service="x", environment="stage").environment == "stage"
    with pytest.raises(TypeError, match="unknown setting"):
        Settings.from_env({}, service="x", enviroment="typo")


def test_release_falls_back_to_service_at_git_sha(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(
        [
            "git",
            "-C",
            str(tmp_path),
            "-c",
            "user.email=a@b",
            "-c",
            "user.name=a",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "x",
        ],
        check=True,
    )
    sha = subprocess.run(
        ["git", "-C", str(tmp_path), "rev-parse", "--short=8", "HEAD"], capture_output=True, text=True, check=True
    )
    monkeypatch.chdir(tmp_path)
    assert settings().release == f"payments-worker@{sha.stdout.strip()}"


def test_masked_dsn_hides_the_key() -> None:
    masked = settings(SENTRY_DSN=DSN).masked_dsn
    assert masked is not None
    assert "abcdef0123" not in masked
    assert masked.startswith("https://abcd")
