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
        # The SDK's queue of size 0 has no bound at all.
        ({"OBSKIT_SENTRY_QUEUE_SIZE": "0"}, "OBSKIT_SENTRY_QUEUE_SIZE", "a whole number >= 1"),
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


def test_reads_scrubbing_noise_and_storm_settings() -> None:
    s = settings(
        OBSKIT_SCRUB_KEYS="ssn, X-Internal-Token",
        OBSKIT_SCRUB_PATTERNS=r"ORD-\d{4,6}, EMP-[0-9]+",
        OBSKIT_IGNORE_EXCEPTIONS="KeyError, requests.exceptions.Timeout",
        OBSKIT_IGNORE_LOGGERS="kafka.conn,urllib3",
        OBSKIT_SEND_CLIENT_ERRORS="yes",
        OBSKIT_STORM_LIMIT="50",
        OBSKIT_STORM_WINDOW_S="30",
    )
    assert s.scrub_keys == ("ssn", "X-Internal-Token")
    assert s.scrub_patterns == (r"ORD-\d{4,6}", "EMP-[0-9]+")
    assert s.ignore_exceptions == ("KeyError", "requests.exceptions.Timeout")
    assert s.ignore_loggers == ("kafka.conn", "urllib3")
    assert (s.send_client_errors, s.storm_limit, s.storm_window_s) == (True, 50, 30.0)
    assert (settings().storm_limit, settings().storm_window_s, settings().send_client_errors) == (100, 60.0, False)


def assert_refused(variable: str, raw: str, expected: str) -> None:
    """The setting fails at start with one line naming the variable, the value and what is expected."""
    with pytest.raises(ConfigError) as caught:
        settings(**{variable: raw})
    message = str(caught.value)
    assert message.startswith(f"{variable}={raw!r} is invalid: expected ")
    assert expected in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("variable", "raw", "expected"),
    [
        ("OBSKIT_SCRUB_PATTERNS", "ok,(unclosed", "'(unclosed' does not compile"),
        ("OBSKIT_SCRUB_PATTERNS", "a*", "'a*' matches nothing"),
        ("OBSKIT_SCRUB_KEYS", "ssn,--", "comma-separated key names"),
        ("OBSKIT_SCRUB_KEYS", "ssn;otp", "comma-separated key names"),
        ("OBSKIT_SCRUB_KEYS", "badge id", "comma-separated key names"),
        ("OBSKIT_IGNORE_EXCEPTIONS", "requests.Timeout()", "comma-separated type names"),
        ("OBSKIT_SEND_CLIENT_ERRORS", "sometimes", "one of 1/0"),
        ("OBSKIT_STORM_LIMIT", "-1", "a whole number >= 0"),
        ("OBSKIT_STORM_WINDOW_S", "0", "a number > 0"),
    ],
)
def test_bad_noise_and_scrubbing_settings_name_the_variable(variable: str, raw: str, expected: str) -> None:
    assert_refused(variable, raw, expected)


def test_scrub_patterns_given_to_init_are_checked_like_the_variable() -> None:
    assert Settings.from_env({}, service="x", scrub_patterns=["a+", "b"]).scrub_patterns == ("a+", "b")
    with pytest.raises(ConfigError, match="OBSKIT_SCRUB_PATTERNS"):
        Settings.from_env({}, service="x", scrub_patterns=["("])


@pytest.mark.parametrize(
    ("variable", "raw", "expected"),
    [
        ("SENTRY_ENVIRONMENT", "EU Prod/blue", "without '/'"),
        ("SENTRY_ENVIRONMENT", "prod\nx", "without '/'"),
        ("SENTRY_ENVIRONMENT", "None", "not 'None'"),
        ("SENTRY_ENVIRONMENT", "e" * 65, "1-64 characters"),
        ("SENTRY_RELEASE", "svc@1.0/abc", "without '/'"),
        ("SENTRY_RELEASE", "my svc@1.0\tx", "without '/'"),
        ("SENTRY_RELEASE", "svc@1\\2", "without '/'"),
        ("SENTRY_RELEASE", "latest", "not '.', '..' or 'latest'"),
        ("SENTRY_RELEASE", "..", "not '.', '..' or 'latest'"),
        ("SENTRY_RELEASE", "r" * 201, "1-200 characters"),
    ],
)
def test_environment_and_release_sentry_would_refuse_fail_at_start(variable: str, raw: str, expected: str) -> None:
    assert_refused(variable, raw, expected)


def test_environment_and_release_given_to_init_are_checked_like_the_variables() -> None:
    s = settings(SENTRY_ENVIRONMENT="EU Prod", SENTRY_RELEASE="svc@1.0 rc1")
    assert (s.environment, s.release) == ("EU Prod", "svc@1.0 rc1")
    with pytest.raises(ConfigError, match=r"^SENTRY_ENVIRONMENT="):
        Settings.from_env({}, service="x", environment="prod/eu")
    with pytest.raises(ConfigError, match=r"^SENTRY_RELEASE="):
        Settings.from_env({}, service="x", release="x@1/2")
