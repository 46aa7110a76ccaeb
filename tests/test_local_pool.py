"""The local backend for tasks: a process pool running packs through the worker's own handler code, with a
map's semantics, and what `RunPod().jobs.map(..., backend="local")` runs on."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sample_tasks

from runpod_hybrid import RunPod
from runpod_hybrid.errors import JobError
from runpod_hybrid.serverless import InputsFile, LocalPool, MapFailure

from conftest import eventually


@pytest.fixture(scope="module")
def pool() -> Iterator[LocalPool]:
    with LocalPool(["sample_tasks"], workers=2) as local:
        yield local


def test_results_in_input_order_or_as_they_come(pool: LocalPool, tmp_path: Path) -> None:
    assert list(pool.map("square", range(200))) == [i * i for i in range(200)]
    assert sorted(pool.map("square", range(50), order_outputs=False)) == sorted(i * i for i in range(50))
    assert list(pool.map("count", [2, 1])) == [[{"i": 0}, {"i": 1}], [{"i": 0}]]  # a generator's chunks
    lines = tmp_path / "inputs.jsonl"
    lines.write_text('1\n"a"\n\n{}\n')
    assert list(pool.map(sample_tasks.echo, InputsFile(lines))) == [1, "a", {}]


def test_failures_are_per_input_with_retries(pool: LocalPool, tmp_path: Path) -> None:
    specs = [{"marker": str(tmp_path / f"m{i}"), "fail_times": i % 2, "value": i} for i in range(6)]
    assert list(pool.map("flaky", specs, retries=1)) == list(range(6))
    results = list(pool.map("boom", ["x", "y"], retries=0, return_exceptions=True))
    assert [type(r) for r in results] == [MapFailure, MapFailure] and "RuntimeError: y" in str(
        results[1].error
    )
    with pytest.raises(JobError, match="RuntimeError: z"):
        list(pool.map("boom", ["z"], retries=0))


def test_a_worker_process_that_dies_fails_its_pack_once_and_the_pool_recovers(
    pool: LocalPool, tmp_path: Path
) -> None:
    spec = {"marker": str(tmp_path / "died"), "value": "survived"}
    assert list(pool.map("die_once", [spec], retries=1)) == ["survived"]
    [failure] = pool.map(
        "die_once", [{"marker": str(tmp_path / "again"), "value": 1}], retries=0, return_exceptions=True
    )
    assert isinstance(failure, MapFailure) and "worker process died" in str(failure.error)
    assert list(pool.map("square", [3])) == [9]


def test_a_stop_kills_the_running_tasks(tmp_path: Path) -> None:
    with LocalPool(["sample_tasks"], workers=1) as local:
        stop = threading.Event()
        beat = tmp_path / "beat"
        results = local.map("spin", [{"beat": str(beat), "limit_s": 120}], stop=stop)
        outcome: list[BaseException] = []

        def consume() -> None:
            try:
                list(results)
            except JobError as exc:
                outcome.append(exc)

        runner = threading.Thread(target=consume)
        runner.start()
        eventually(beat.exists)
        stop.set()
        runner.join(timeout=30)
        assert outcome and isinstance(outcome[0], JobError) and outcome[0].state == "CANCELLED"
        assert list(local.map("square", [4])) == [16]  # the pool starts afresh


def test_local_task_jobs_run_in_the_pool_not_in_a_serverless_runtime() -> None:
    results = RunPod().jobs.map(sample_tasks.where, [1, 2, 3], backend="local")
    assert results == [{"pool_process": True, "runpod_runtime": False}] * 3
