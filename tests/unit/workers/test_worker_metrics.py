"""The worker's metrics files under prefork, and what the backlog sampler asks Redis for."""

import os
from pathlib import Path

from observability.metrics import CATALOGUE, FORBIDDEN_LABELS
from workers import _metrics


def touch(directory: Path, *names: str) -> None:
    for name in names:
        (directory / name).write_bytes(b"")


def test_a_dead_processs_live_gauges_go_and_its_counters_stay(tmp_path: Path) -> None:
    me = os.getpid()
    touch(
        tmp_path,
        "counter_111.db",
        "histogram_111.db",
        "gauge_livemax_111.db",
        "gauge_livesum_111.db",
        "gauge_max_111.db",
        f"gauge_livemax_{me}.db",
    )
    assert _metrics.prune_dead_processes(str(tmp_path), alive=lambda pid: pid == me) == [111]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["counter_111.db", "histogram_111.db", "gauge_max_111.db", f"gauge_livemax_{me}.db"]
    )


def test_an_earlier_runs_metric_files_are_removed_and_nothing_else(tmp_path: Path) -> None:
    touch(tmp_path, "counter_1.db", "gauge_livemax_2.db", "histogram_3.db", "notes.txt", "counter.db.bak")
    assert _metrics.prepare_multiprocess_dir(str(tmp_path)) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["counter.db.bak", "notes.txt"]
    fresh = tmp_path / "new" / "dir"
    _metrics.prepare_multiprocess_dir(str(fresh))
    assert fresh.is_dir()


def test_the_backlog_counts_the_priority_lists_too() -> None:
    sampler = _metrics.BacklogSampler(redis_url="redis://127.0.0.1:9/0", queues=["payments"], key_prefix="app:")
    assert sampler._keys("payments") == [
        "app:payments",
        "app:payments\x06\x163",
        "app:payments\x06\x166",
        "app:payments\x06\x169",
    ]


def test_celery_metrics_have_bounded_labels_only() -> None:
    celery = [spec for spec in CATALOGUE if spec.name.startswith("obskit_celery_")]
    assert {spec.name for spec in celery} >= {
        "obskit_celery_tasks_total",
        "obskit_celery_task_runtime_seconds",
        "obskit_celery_queue_wait_seconds",
        "obskit_celery_queue_wait_clock_skew_total",
        "obskit_celery_queue_backlog_messages",
        "obskit_celery_worker_up",
    }
    for spec in celery:
        assert not FORBIDDEN_LABELS.intersection(spec.labels), spec.name
        if spec.kind == "gauge":
            assert spec.multiprocess_mode.startswith("live"), spec.name
