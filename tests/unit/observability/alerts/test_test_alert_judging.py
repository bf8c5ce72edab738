import yaml

from observability.alerts import testalert
from observability.alerts.routing import render_config

N, NF, R, RF = (
    "alertmanager_notifications",
    "alertmanager_notifications_failed",
    "alertmanager_notification_requests",
    "alertmanager_notification_requests_failed",
)


def test_receivers_and_their_integrations_come_from_the_config() -> None:
    config = yaml.safe_load(
        render_config(
            {
                "OBSKIT_ALERT_WEBHOOK_URL": "http://127.0.0.1:9/",
                "OBSKIT_ALERT_PAGERDUTY_ROUTING_KEY": "0123456789abcdef0123456789abcdef",
            }
        )[0]
    )
    assert testalert.receivers(config) == {"nowhere": [], "pagerduty": ["pagerduty"], "webhook": ["webhook"]}
    assert testalert._has_test_route(config)
    assert not testalert._has_test_route({"route": {"receiver": "devnull"}})


def test_accepted_takes_a_request_that_did_not_fail() -> None:
    before = {(N, "webhook"): 3, (R, "webhook"): 3, (RF, "webhook"): 0}
    assert testalert._judge(before, before, ["webhook"]) is None
    started = {**before, (N, "webhook"): 4}
    assert testalert._judge(started, before, ["webhook"]) is None  # sent, no answer yet
    answered = {**started, (R, "webhook"): 4}
    assert testalert._judge(answered, before, ["webhook"]) == "accepted"
    retried = {**started, (R, "webhook"): 5, (RF, "webhook"): 1}
    assert testalert._judge(retried, before, ["webhook"]) == "accepted"  # failed once, then went through


def test_refused_when_alertmanager_gives_up() -> None:
    before: dict[tuple[str, str], float] = {}
    failing = {(N, "slack"): 1, (R, "slack"): 3, (RF, "slack"): 3}
    assert testalert._judge(failing, before, ["slack"]) is None  # still retrying
    assert testalert._judge({**failing, (NF, "slack"): 1}, before, ["slack"]) == "refused"


def test_every_integration_of_a_receiver_must_accept() -> None:
    now = {(R, "slack"): 1, (R, "email"): 0}
    assert testalert._judge(now, {}, ["slack", "email"]) is None
    assert testalert._judge({**now, (R, "email"): 1}, {}, ["slack", "email"]) == "accepted"
