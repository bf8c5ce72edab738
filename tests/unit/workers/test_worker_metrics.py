"""The worker's metrics files under prefork, and what the backlog sampler asks Redis for."""

import os
from pathlib import Path

import pytest

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


def write(directory: Path, name: str, values: dict[tuple[str, str, tuple[str, ...]], float]) -> None:
    """A metric file as prometheus_client's multiprocess values write it."""
    from prometheus_client.mmap_dict import MmapedDict, mmap_key

    file = MmapedDict(str(directory / name))
    try:
        for (metric, sample, labels), value in values.items():
            key = mmap_key(metric, sample, ["task", "le"][: len(labels)], list(labels), "help")
            file.write_value(key, value, 0.0)
    finally:
        file.close()


def served(directory: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client.multiprocess import MultiProcessCollector

    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in MultiProcessCollector(None, str(directory)).collect()
        for s in family.samples
    }


def child_values(n: float) -> dict[str, dict[tuple[str, str, tuple[str, ...]], float]]:
    return {
        "counter": {
            ("tasks", "tasks_total", ("a",)): n,
            ("tasks", "tasks_total", (f"only-{n}",)): 1.0,
        },
        "histogram": {
            ("runtime", "runtime_bucket", ("a", "0.1")): n,
            ("runtime", "runtime_bucket", ("a", "+Inf")): n + 1,
            ("runtime", "runtime_sum", ("a",)): n / 8,  # exact in binary: sums in any order agree
        },
    }


def test_exited_childrens_files_fold_into_one_archive_and_the_sums_served_stay_the_same(tmp_path: Path) -> None:
    me = os.getpid()
    for pid, n in ((101, 1.0), (102, 2.0), (me, 4.0)):
        for kind, values in child_values(n).items():
            write(tmp_path, f"{kind}_{pid}.db", values)
    before = served(tmp_path)
    assert before[("tasks_total", (("task", "a"),))] == 7.0

    assert _metrics.compact_dead_processes(str(tmp_path), alive=lambda pid: pid == me) == [101, 102]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["counter_archive.db", "histogram_archive.db", f"counter_{me}.db", f"histogram_{me}.db"]
    )
    assert served(tmp_path) == before

    # A child that exits later folds into the same archive.
    for kind, values in child_values(8.0).items():
        write(tmp_path, f"{kind}_103.db", values)
    later = served(tmp_path)
    assert later[("tasks_total", (("task", "a"),))] == 15.0
    assert _metrics.compact_dead_processes(str(tmp_path), alive=lambda pid: pid == me) == [103]
    assert served(tmp_path) == later
    assert _metrics.compact_dead_processes(str(tmp_path), alive=lambda pid: pid == me) == []


def test_a_file_that_cannot_be_read_stays_as_it_is_and_the_others_fold(tmp_path: Path) -> None:
    write(tmp_path, "counter_101.db", child_values(1.0)["counter"])
    broken = tmp_path / "counter_102.db"
    content = (4096).to_bytes(4, "little") + bytes(60)  # claims 4 KiB of values, holds 64 bytes
    broken.write_bytes(content)
    assert _metrics.compact_dead_processes(str(tmp_path), alive=lambda pid: False) == [101]
    assert broken.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["counter_102.db", "counter_archive.db"]
    broken.unlink()
    assert served(tmp_path)[("tasks_total", (("task", "a"),))] == 1.0


def test_a_fold_that_fails_to_write_leaves_every_value_counted_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for pid, n in ((101, 1.0), (102, 2.0)):
        write(tmp_path, f"counter_{pid}.db", child_values(n)["counter"])
    assert _metrics.compact_dead_processes(str(tmp_path), alive=lambda pid: pid == 102) == [101]
    before = served(tmp_path)

    def full_disk(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_metrics.os, "replace", full_disk)
    with pytest.raises(OSError, match="No space"):
        _metrics.compact_dead_processes(str(tmp_path), alive=lambda pid: False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["counter_102.db", "counter_archive.db"]
    assert served(tmp_path) == before
    monkeypatch.undo()
    assert _metrics.compact_dead_processes(str(tmp_path), alive=lambda pid: False) == [102]
    assert served(tmp_path) == before


def test_the_archive_and_half_folded_files_of_an_earlier_run_are_removed(tmp_path: Path) -> None:
    touch(tmp_path, "counter_archive.db", "histogram_archive.db", "counter_archive.db.tmp")
    assert _metrics.prepare_multiprocess_dir(str(tmp_path)) == 3
    assert list(tmp_path.iterdir()) == []
