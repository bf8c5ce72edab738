"""``obskit bench all``: every benchmark in one invocation, each in a process of its own, and a report.

The consumer and Celery benchmarks come from ``consumers`` and ``workers`` through the ``obskit.bench``
entry points; they run as ``obskit bench <name> --json`` subprocesses so no state (an initialised SDK,
a Prometheus registry) leaks from one into the next. ``--report DIR`` writes ``benchmarks.md`` (with the
machine's description) and ``benchmarks.png``.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from observability.errors import ObskitError

Echo = Callable[[str], None]


def _run(name: str, args: Sequence[str], echo: Echo) -> dict[str, Any]:
    echo(f"running obskit bench {name} {' '.join(args)} ...")
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "observability.cli", "bench", name, *args, "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-10:])
        message = f"obskit bench {name} failed ({result.returncode}):\n{tail}"
        raise ObskitError(message)
    data: dict[str, Any] = json.loads(result.stdout)
    data["_seconds"] = round(time.monotonic() - started, 1)
    return data


def machine() -> dict[str, str]:
    """What the numbers were measured on."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory = f"{int(line.split()[1]) // 1024 // 1024} GiB"
                break
    except OSError:
        pass
    load = os.getloadavg()
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": memory,
        "os": platform.platform(),
        "python": platform.python_version(),
        "load average at start": f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
    }


def run_all(*, messages: int, rounds: int, memory_messages: int, echo: Echo) -> dict[str, Any]:
    result: dict[str, Any] = {"machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    result["consumer"] = _run(
        "consumer",
        ["--messages", str(messages), "--rounds", str(rounds), "--memory-messages", str(memory_messages)],
        echo,
    )
    result["celery"] = _run("celery", ["--rounds", str(rounds)], echo)
    result["slo"] = _run("slo", [], echo)
    return result


TARGETS = {
    "obskit, traces 0": 0.85,
    "obskit, traces 0.01": 0.8,
    "obskit, traces 0.1": 0.5,
}


def summary_lines(result: dict[str, Any]) -> list[str]:
    """The tables, as Markdown (also printed as is)."""
    consumer = result["consumer"]
    lines = [
        f"### Kafka consumer ({consumer['messages']} messages, 1 partition, no-op handler, "
        f"medians of {consumer['rounds']} interleaved rounds)",
        "",
        "| variant | msg/s | x bare | target |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, row in consumer["variants"].items():
        target = TARGETS.get(name)
        mark = "" if target is None else f">= {target} {'met' if row['ratio'] >= target else 'MISSED'}"
        note = "" if row["messages"] == consumer["messages"] else f" ({row['messages']} messages, 1 round)"
        lines.append(f"| {name}{note} | {row['msg_per_s']} | {row['ratio']:.3f} | {mark} |")
    if "sentry_down_vs_up" in consumer:
        ratio = consumer["sentry_down_vs_up"]
        verdict = "met" if ratio >= 0.9 else "MISSED"
        lines.append(f"\nSentry down / Sentry up with 1% failing: **{ratio:.3f}** (target >= 0.9: {verdict})")
    if "memory" in consumer:
        m = consumer["memory"]
        growth = m["growth_mb"]
        lines.append(
            f"\nRSS of the obskit consumer: {m['rss_before_mb']} MB after warm-up, {m['rss_after_mb']} MB after "
            f"{m['messages']} more messages: **{growth:+} MB** (target < 20 MB: {'met' if growth < 20 else 'MISSED'})"
        )
    lines.append(f"\nEnvelopes received by the local Sentry endpoint: {consumer['received_by_sentry_endpoint']}")
    shed = consumer.get("traces_shed_by_backpressure")
    if shed:
        lines.append(
            "\nSampled messages handled untraced because the SDK's send queue was full (counted in "
            f'`obskit_sentry_events_dropped_total{{reason="queue_overflow"}}`), per sample rate: {shed}. '
            "A sampled message costs about 17 us to build and hand over; the SDK's sender cannot keep up "
            "with thousands per second, so the kit sheds the rest instead of building them to be dropped."
        )
    lines.append(
        "\nThe slowest peers run one round over the first messages of the same topic and are compared with a "
        "bare run over the same messages measured just before each."
    )
    celery = result["celery"]
    lines += [
        "",
        "### Celery (no-op tasks, solo pool, acks_late, real Redis broker)",
        "",
        "| measure | value |",
        "| --- | ---: |",
    ]
    lines += [f"| {k} | {v} |" for k, v in celery.items() if not k.startswith("_") and not isinstance(v, list | dict)]
    slo = result["slo"]
    lines += ["", "### SLO recording and scraping", "", "| measure | value |", "| --- | ---: |"]
    lines += [f"| {k} | {v} |" for k, v in slo.items() if not k.startswith("_")]
    return lines


def write_report(result: dict[str, Any], directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    chart = directory / "benchmarks.png"
    _chart(result, chart)
    md = directory / "benchmarks.md"
    machine_rows = "\n".join(f"| {k} | {v} |" for k, v in result["machine"].items())
    md.write_text(
        "# Benchmarks\n\n"
        "Measured by `obskit bench all` in one invocation on one machine: every variant reads the same data, "
        "side by side, and the ratios are what matters (absolute numbers move with the machine and its load). "
        "Written by `obskit bench all --report docs/`; do not edit by hand.\n\n"
        f"Run on {result['date']}.\n\n| machine | |\n| --- | --- |\n{machine_rows}\n\n"
        + "\n".join(summary_lines(result))
        + "\n\n![consumer throughput relative to the bare loop](benchmarks.png)\n"
    )
    (directory / "benchmarks.json").write_text(json.dumps(result, indent=2) + "\n")
    return [md, chart, directory / "benchmarks.json"]


def _chart(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["consumer"]["variants"]
    names = list(rows)
    ratios = [rows[n]["ratio"] for n in names]
    colors = ["#888888" if n.startswith("bare") else "#2e7d32" if n.startswith("obskit") else "#c62828" for n in names]
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(names) + 1.2))
    ax.barh(names[::-1], ratios[::-1], color=colors[::-1])
    for y, value in enumerate(ratios[::-1]):
        ax.text(value + 0.01, y, f"{value:.2f}x", va="center", fontsize=9)
    ax.axvline(1.0, color="#444444", linewidth=0.8, linestyle="--")
    ax.set_xlabel("throughput relative to the bare confluent-kafka loop (higher is better)")
    ax.set_title("Kafka consumer: messages per second, x bare")
    ax.set_xlim(0, max(1.15, max(ratios) + 0.15))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
