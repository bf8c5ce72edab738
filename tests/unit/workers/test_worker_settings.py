"""The worker's settings and the Celery configuration they make; nothing read at import."""

import subprocess
import sys

import pytest

from observability.errors import ConfigError
from workers.settings import WorkerSettings

REDIS = "redis://127.0.0.1:6379/3"


def test_defaults_ack_late_and_requeue_tasks_of_a_lost_worker() -> None:
    config = WorkerSettings.from_env({"REDIS_URL": REDIS}).celery_config()
    assert config["broker_url"] == config["result_backend"] == REDIS
    assert config["task_acks_late"] is True
    assert config["task_reject_on_worker_lost"] is True
    assert config["worker_prefetch_multiplier"] == 1
    assert config["broker_transport_options"]["visibility_timeout"] == 3600.0
    assert config["task_default_queue"] == "celery"


def test_a_short_visibility_timeout_is_swept_for_every_second() -> None:
    settings = WorkerSettings.from_env({"REDIS_URL": REDIS, "OBSKIT_CELERY_VISIBILITY_TIMEOUT_S": "5"})
    options = settings.celery_config()["broker_transport_options"]
    assert options == {"visibility_timeout": 5.0, "unacked_restore_interval": 1, "unacked_restore_throttle": 1}
    assert WorkerSettings.from_env({"REDIS_URL": REDIS}).restore_interval_s == 10


def test_every_variable_is_read() -> None:
    settings = WorkerSettings.from_env(
        {
            "REDIS_URL": REDIS,
            "SERVICE_NAME": "payments-worker",
            "OBSKIT_CELERY_QUEUE": "payments",
            "OBSKIT_CELERY_BACKLOG_INTERVAL_S": "2.5",
            "OBSKIT_WORKER_METRICS_PORT": "9808",
            "OBSKIT_WORKER_METRICS_HOST": "0.0.0.0",
            "OBSKIT_CELERY_CRONS": "yes",
        }
    )
    assert settings.service == "payments-worker"
    assert settings.queue == "payments"
    assert settings.backlog_interval_s == 2.5
    assert (settings.metrics_host, settings.metrics_port) == ("0.0.0.0", 9808)
    assert settings.crons is True


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("REDIS_URL", "", "the Celery broker"),
        ("REDIS_URL", "amqp://guest@localhost//", "a Redis URL"),
        ("OBSKIT_CELERY_VISIBILITY_TIMEOUT_S", "0", "a number > 0"),
        ("OBSKIT_CELERY_VISIBILITY_TIMEOUT_S", "soon", "a number > 0"),
        ("OBSKIT_WORKER_METRICS_PORT", "70000", "a TCP port"),
        ("OBSKIT_CELERY_CRONS", "maybe", "one of 1/0"),
        ("OBSKIT_CELERY_QUEUE", "two words", "a queue name"),
    ],
)
def test_a_bad_value_names_the_variable(variable: str, value: str, expected: str) -> None:
    env = {"REDIS_URL": REDIS, variable: value}
    with pytest.raises(ConfigError) as caught:
        WorkerSettings.from_env(env)
    assert caught.value.variable == variable
    assert expected in str(caught.value)
    assert "\n" not in str(caught.value)


def test_importing_workers_reads_no_environment_and_celery_finds_the_app() -> None:
    code = (
        "import os, sys\n"
        "os.environ.pop('REDIS_URL', None)\n"
        "import workers\n"
        "assert not workers.app.configured, 'configured at import'\n"
        "from celery.app.utils import find_app\n"
        "assert find_app('workers') is workers.app\n"
        "import workers.tasks\n"
        "assert not workers.app.configured\n"
        "try:\n"
        "    workers.app.conf.broker_url\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ConfigError REDIS_URL=''")


def test_the_app_configures_from_given_settings_and_includes_the_example_tasks() -> None:
    from workers import make_app

    app = make_app(WorkerSettings(redis_url=REDIS, queue="q1"), set_as_current=False)
    assert app.conf.task_default_queue == "q1"
    assert app.conf.task_acks_late is True
    assert app.conf.include == ["workers.tasks"]
