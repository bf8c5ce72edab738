"""Handlers the consumer subprocesses in these tests run: they write what they handled to a file."""

import os
import time
from typing import Any

_out: Any = None


def record(payload: dict[str, Any], message: Any) -> None:
    global _out  # noqa: PLW0603
    if _out is None:
        _out = open(os.environ["OBSKIT_TEST_HANDLED_FILE"], "a", buffering=1)  # noqa: SIM115
    _out.write(f"{message.partition()} {message.offset()} {payload['key']}\n")
    delay = float(os.environ.get("OBSKIT_TEST_HANDLE_DELAY_S", "0"))
    if delay:
        time.sleep(delay)
