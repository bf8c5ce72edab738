"""Several processes record into the same Redis; one is SIGKILLed: the totals equal what was flushed."""

import signal
import subprocess
import sys
import time
from typing import Any

from observability.slo import Outcome
from observability.slo.store import Store
from observability.slo.windows import parse_duration

WORKER = """
import sys, time
from observability.slo import Outcome, Recorder
service, url, outcome, batches = sys.argv[1], sys.argv[2], Outcome(sys.argv[3]), int(sys.argv[4])
recorder = Recorder(service=service, env="prod", redis_url=url, flush_interval_s=0.05)
recorded = 0
for _ in range(batches):
    recorded += 1000
    print("recorded", recorded, flush=True)      # an upper bound before the counts exist
    for _ in range(1000):
        recorder.record(outcome)
    if recorder.flush():
        print("flushed", recorded, flush=True)   # a lower bound once Redis has them
    time.sleep(0.01)
recorder.close()
print("done", recorded, flush=True)
"""


def spawn(service: str, redis_url: str, outcome: str, batches: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, service, redis_url, outcome, str(batches)],
        stdout=subprocess.PIPE,
        text=True,
    )


def test_totals_equal_what_was_flushed_when_one_process_is_killed(redis_url: str, store: Store, service: str) -> None:
    survivors = [spawn(service, redis_url, outcome, 20) for outcome in ("ok", "ok", "error")]
    victim = spawn(service, redis_url, "rejected", 10_000)
    lines: list[str] = []
    assert victim.stdout is not None
    while len([line for line in lines if line.startswith("flushed")]) < 5:
        lines.append(victim.stdout.readline().strip())
    victim.send_signal(signal.SIGKILL)
    rest, _ = victim.communicate(timeout=30)
    lines += rest.splitlines()
    assert victim.returncode == -signal.SIGKILL
    flushed = max(int(line.split()[1]) for line in lines if line.startswith("flushed"))
    recorded = max(int(line.split()[1]) for line in lines if line.startswith("recorded"))
    for proc in survivors:
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0
        assert out.splitlines()[-1] == "done 20000"

    (reading,) = store.read([(service, "prod")], [parse_duration("5m")], time.time())
    counts: Any = reading.windows[parse_duration("5m")]
    assert counts[Outcome.OK] == 40_000
    assert counts[Outcome.ERROR] == 20_000
    # The killed process's counts: at least what it saw flushed, at most what it had recorded.
    assert flushed <= counts[Outcome.REJECTED] <= recorded
