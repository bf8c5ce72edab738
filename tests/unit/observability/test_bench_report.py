"""The benchmark report: the Celery section is a table of variants, the kit's row against its target."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from observability import _bench_report


def celery_row(mode: str, ratio: float, sent: float = 0, sent_as: str = "transactions") -> dict[str, Any]:
    return {
        "mode": mode,
        "tasks_per_s_median": round(1000 * ratio, 1),
        "tasks_per_s_best": round(1050 * ratio, 1),
        "ratio": ratio,
        "cpu_us_per_task": round(600 / ratio, 1),
        "traces_sent_per_round": sent,
        "traces_sent_as": sent_as,
    }


def result(kit_ratio: float = 0.96) -> dict[str, Any]:
    return {
        "machine": {"cpu": "test", "cores": "2"},
        "date": "2026-01-01 00:00 UTC",
        "consumer": {
            "messages": 1000,
            "rounds": 3,
            "variants": {
                "bare confluent-kafka loop": {"msg_per_s": 100000, "ratio": 1.0, "messages": 1000},
                "obskit, traces 0": {"msg_per_s": 90000, "ratio": 0.9, "messages": 1000},
            },
            "received_by_sentry_endpoint": {},
        },
        "celery": {
            "tasks per round": 5000,
            "rounds": 3,
            "traces sample rate": 0.1,
            "traced tasks per s at most": 10.0,
            "ratio kit/bare (median of pairs)": kit_ratio,
            "variants": {
                "bare Celery": celery_row("bare", 1.0),
                "Celery + obskit": celery_row("kit", kit_ratio, 25),
                "Sentry CeleryIntegration": celery_row("sentry", 0.5, 480),
                "OpenTelemetry CeleryInstrumentor": celery_row("otel", 0.8, 500, "spans"),
            },
            "rounds detail": [],
        },
        "slo": {"record: outcomes": 10},
    }


def table_row(lines: list[str], name: str) -> list[str]:
    (row,) = [line for line in lines if line.startswith(f"| {name} |")]
    return [cell.strip() for cell in row.strip("|").split("|")]


def test_celery_section_has_a_row_per_variant_with_its_ratio_and_traces() -> None:
    lines = _bench_report.summary_lines(result())
    assert any(line.startswith("### Celery (5000 no-op tasks a round") for line in lines)
    assert table_row(lines, "bare Celery") == ["bare Celery", "1000.0", "1050.0", "1.000", "600.0", "", ""]
    assert table_row(lines, "Sentry CeleryIntegration")[3:] == ["0.500", "1200.0", "480 transactions", ""]
    assert table_row(lines, "OpenTelemetry CeleryInstrumentor")[3:] == ["0.800", "750.0", "500 spans", ""]
    assert not any(line.startswith("| ratio kit/bare") for line in lines)


@pytest.mark.parametrize(("kit_ratio", "verdict"), [(0.96, ">= 0.95 met"), (0.9, ">= 0.95 MISSED")])
def test_only_the_kit_row_is_held_to_the_target(kit_ratio: float, verdict: str) -> None:
    lines = _bench_report.summary_lines(result(kit_ratio))
    assert table_row(lines, "Celery + obskit")[-1] == verdict
    targets = [table_row(lines, name)[-1] for name in result()["celery"]["variants"]]
    assert [t for t in targets if t] == [verdict]


def test_report_charts_the_consumer_and_celery_ratios(tmp_path: Path) -> None:
    md, png, _ = _bench_report.write_report(result(), tmp_path)
    assert png.read_bytes().startswith(b"\x89PNG")
    assert "| Celery + obskit | 960.0 |" in md.read_text()


def test_a_peer_under_a_missing_package_counts_as_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    installs: list[list[str]] = []
    monkeypatch.setattr(_bench_report.subprocess, "run", lambda args, **_: installs.append(args))
    _bench_report.ensure_bench_extra(["json", "no_such_package.instrumentation"], lambda line: None)
    assert installs
    assert installs[0][1:4] == ["-m", "pip", "install"]
    assert any(r.startswith("opentelemetry-instrumentation-celery") for r in installs[0])
    installs.clear()
    _bench_report.ensure_bench_extra(["json", "email.mime"], lambda line: None)
    assert installs == []
