"""The demo's traffic: a web app's worth of checkouts, payments and payment events, each for a user.

``python -m workers._demo_traffic`` publishes a fixed mix and exits: good work, business-rule failures
(over the daily limit), a flaky call that fails for good after its retries, and payment events handed to
Kafka, some of which the consumer rejects or cannot process.
"""

from __future__ import annotations

import random
import uuid

import observability as obs
from workers.tasks import checkout, fetch_exchange_rate, pay, publish_payment_event

USERS = [f"user-{n}" for n in range(1, 9)]


def main() -> None:
    obs.init("demo-web")
    rng = random.Random(42)  # noqa: S311  (demo amounts, not secrets)
    sent = {"checkout": 0, "over_limit": 0, "flaky": 0, "kafka": 0}
    for n in range(40):
        with obs.bind(user_id=USERS[n % len(USERS)]):
            checkout.delay(USERS[n % len(USERS)], round(rng.uniform(5, 500), 2))
            sent["checkout"] += 1
    for n in range(6):
        with obs.bind(user_id=USERS[n]):
            pay.delay(USERS[n], 25_000.0)  # over the daily limit: a business-rule failure
            sent["over_limit"] += 1
    for n in range(2):
        with obs.bind(user_id=USERS[n]):
            fetch_exchange_rate.delay("USD", fail_times=10)  # fails after its 3 retries: one error each
            sent["flaky"] += 1
    for n in range(24):
        user = USERS[n % len(USERS)]
        payment = {"payment_id": uuid.uuid4().hex[:12], "user_id": user, "amount": round(rng.uniform(5, 500), 2)}
        if n % 8 == 3:
            payment["fail"] = True  # the consumer's gateway fails: dead-lettered, one error
        elif n % 8 == 5:
            payment["amount"] = 50_000.0  # over the limit at the consumer: a business-rule failure
        with obs.bind(user_id=user):
            publish_payment_event.delay(payment, topic="payments")
            sent["kafka"] += 1
    obs.shutdown()
    print(" ".join(f"{k}={v}" for k, v in sent.items()), flush=True)


if __name__ == "__main__":
    main()
