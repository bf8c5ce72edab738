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


def _importable(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


def ensure_bench_extra(modules: Sequence[str], echo: Echo) -> None:
    """Install the `bench` extra (the peers a benchmark compares the kit with) when any of ``modules``
    is missing: the kit itself never needs them."""
    if all(_importable(module) for module in modules):
        return
    from importlib.metadata import requires

    extra = [r.split(";")[0].strip() for r in requires("obskit") or [] if 'extra == "bench"' in r]
    echo(f"installing the benchmark's peers: {' '.join(extra)}")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", *extra], check=True)


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

# The Celery targets, by variant (``mode`` in the bench's rows): only the kit has one.
CELERY_TARGETS = {"kit": 0.95}


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
    lines += celery_lines(result["celery"])
    slo = result["slo"]
    lines += ["", "### SLO recording and scraping", "", "| measure | value |", "| --- | ---: |"]
    lines += [f"| {k} | {v} |" for k, v in slo.items() if not k.startswith("_")]
    return lines


def celery_lines(celery: dict[str, Any]) -> list[str]:
    """The Celery section: a row per variant, the kit's against its target."""
    lines = [
        "",
        f"### Celery ({celery['tasks per round']} no-op tasks a round, solo pool, acks_late, real Redis broker, "
        f"medians of {celery['rounds']} rounds, the variants' order rotated each round)",
        "",
        "| variant | tasks/s | best | x bare | CPU us/task | traces sent a round | target |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, row in celery["variants"].items():
        target = CELERY_TARGETS.get(row["mode"])
        mark = "" if target is None else f">= {target} {'met' if row['ratio'] >= target else 'MISSED'}"
        sent = "" if row["mode"] == "bare" else f"{row['traces_sent_per_round']:g} {row['traces_sent_as']}"
        lines.append(
            f"| {name} | {row['tasks_per_s_median']} | {row['tasks_per_s_best']} | {row['ratio']:.3f} "
            f"| {row['cpu_us_per_task']} | {sent} | {mark} |"
        )
    lines.append(
        "\nx bare: the median over rounds of each round's ratio to the bare round of the same round. CPU: the "
        f"least per task. Traces sampled at {celery['traces sample rate']}; the kit traces at most "
        f"{celery['traced tasks per s at most']} tasks per second per worker process."
    )
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
        + "\n\n![consumer and Celery throughput relative to bare](benchmarks.png)\n"
    )
    (directory / "benchmarks.json").write_text(json.dumps(result, indent=2) + "\n")
    return [md, chart, directory / "benchmarks.json"]


def _bars(ax: Any, names: list[str], ratios: list[float], colors: list[str]) -> None:
    """Horizontal bars of ratios to bare, first name on top, each labelled with its value."""
    ax.barh(names[::-1], ratios[::-1], color=colors[::-1])
    for y, value in enumerate(ratios[::-1]):
        ax.text(value + 0.01, y, f"{value:.2f}x", va="center", fontsize=9)
    ax.axvline(1.0, color="#444444", linewidth=0.8, linestyle="--")
    ax.set_xlim(0, max(1.15, max(ratios) + 0.15))


def _chart(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grey, green, red = "#888888", "#2e7d32", "#c62828"
    consumer = result["consumer"]["variants"]
    celery = result["celery"]["variants"]
    fig, (top, bottom) = plt.subplots(
        2,
        1,
        figsize=(9, 0.45 * (len(consumer) + len(celery)) + 2.6),
        gridspec_kw={"height_ratios": [len(consumer) + 1.5, len(celery) + 1.5]},
    )
    names = list(consumer)
    colors = [grey if n.startswith("bare") else green if n.startswith("obskit") else red for n in names]
    _bars(top, names, [consumer[n]["ratio"] for n in names], colors)
    top.set_xlabel("throughput relative to the bare confluent-kafka loop (higher is better)")
    top.set_title("Kafka consumer: messages per second, x bare")
    names = list(celery)
    colors = [{"bare": grey, "kit": green}.get(celery[n]["mode"], red) for n in names]
    _bars(bottom, names, [celery[n]["ratio"] for n in names], colors)
    bottom.set_xlabel("throughput relative to bare Celery, median of per-round ratios (higher is better)")
    bottom.set_title("Celery worker: tasks per second, x bare")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
