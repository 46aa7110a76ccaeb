"""Routing rules and cost arithmetic, table-tested (the planner is pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from runpod_hybrid.jobs import JobSpec, load_job_file
from runpod_hybrid.jobs.planner import (
    COLD_START_S,
    IDLE_TIMEOUT_S,
    POD_BOOT_S,
    PlanContext,
    PodOffer,
    load_prices,
    plan,
)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PRICES = load_prices()
KEYED = PlanContext(True, {"embed": "ep-123"}, PRICES, [PodOffer("NVIDIA GeForce RTX 4090", 0.69)])


def task(**overrides: object) -> JobSpec:
    options: dict[str, object] = {"expected_runtime_s": 2.0, **overrides}
    inputs = list(options.pop("inputs", ("a", "b", "c")))  # type: ignore[call-overload]
    return JobSpec.for_task("embed", inputs, module="tasks", **options)


@pytest.mark.parametrize(
    ("job", "ctx", "backend", "expected", "reason"),
    [
        (task(), KEYED, "auto", "serverless", "deployed on an endpoint"),
        (task(), PlanContext(False, {"embed": "ep"}, PRICES), "auto", "local", "no RunPod API key"),
        (task(), KEYED, "local", "local", "asked for the local backend"),
        (
            task(endpoint=None),
            PlanContext(True, {}, PRICES),
            "auto",
            "pod",
            "not deployed on a configured endpoint",
        ),
        (task(spot=True), KEYED, "auto", "pod", "only pods can be spot"),
        (task(outputs=("out",)), KEYED, "auto", "pod", "file outputs"),
        (task(expected_runtime_s=900.0), KEYED, "auto", "pod", "over the endpoint's execution timeout"),
        (JobSpec.for_task("embed", ["x" * (11 * 1024 * 1024)]), KEYED, "auto", "pod", "10 MB"),
        (JobSpec.for_command(["python", "train.py"]), KEYED, "auto", "pod", "needs a pod"),
        (task(), KEYED, "pod", "pod", "asked for a pod"),
    ],
)
def test_routing_rules(job: JobSpec, ctx: PlanContext, backend: str, expected: str, reason: str) -> None:
    chosen = plan(job, ctx, backend)  # type: ignore[arg-type]
    assert chosen.backend == expected
    assert any(reason in r for r in chosen.reasons), chosen.reasons
    assert chosen.refused is None


def test_serverless_cost_counts_cold_start_and_idle_timeout() -> None:
    chosen = plan(task(), KEYED)
    pool, _, usd_per_s = PRICES.pool_for(16)
    assert pool == "AMPERE_16"
    billed_s = 3 * 2.0 + 3 * (COLD_START_S + IDLE_TIMEOUT_S)
    assert chosen.estimated_cost_usd == round(billed_s * usd_per_s, 4)
    assert "2026-06-08" in chosen.price_source  # the plan names the price table and its date


def test_pod_cost_counts_boot() -> None:
    job = JobSpec.for_command(["python", "train.py"], expected_runtime_s=600.0, gpu_count=2)
    chosen = plan(job, KEYED)
    assert chosen.estimated_cost_usd == round((POD_BOOT_S + 600.0) / 3600 * 0.69 * 2, 4)


def test_a_bigger_gpu_need_picks_a_bigger_pool() -> None:
    assert PRICES.pool_for(48)[0] == "AMPERE_48"
    assert PRICES.pool_for(100)[0] == "HOPPER_141"


def test_cheaper_alternative_is_named() -> None:
    # Long inputs and a cheap community card: one pod costs less than serverless per-second billing.
    job = task(expected_runtime_s=500.0, inputs=tuple(range(200)))
    cheap_pods = PlanContext(True, {"embed": "ep-123"}, PRICES, [PodOffer("NVIDIA RTX A4000", 0.17)])
    chosen = plan(job, cheap_pods)
    assert chosen.backend == "serverless"
    assert any(r.startswith("note: pod would cost less") for r in chosen.reasons)


def test_over_budget_is_refused_with_the_numbers() -> None:
    chosen = plan(task(budget_usd=0.0001), KEYED)
    assert chosen.refused is not None
    assert "over the job's budget of $0.0001" in chosen.refused
    assert chosen.over_budget


def test_serverless_forced_but_impossible_is_refused() -> None:
    chosen = plan(JobSpec.for_command(["true"]), KEYED, "serverless")
    assert chosen.refused is not None and "needs a pod" in chosen.refused


def test_examples_route_as_documented() -> None:
    hashing = load_job_file(EXAMPLES / "hash_texts" / "job.toml")
    training = load_job_file(EXAMPLES / "train" / "job.toml")
    with_endpoint = PlanContext(True, {"hasher": "ep-1"}, PRICES, [PodOffer("NVIDIA GeForce RTX 4090", 0.69)])
    assert plan(hashing, with_endpoint).backend == "serverless"
    assert plan(training, with_endpoint).backend == "pod"
    no_key = PlanContext(False, {}, PRICES)
    assert plan(hashing, no_key).backend == plan(training, no_key).backend == "local"


def test_pod_or_serverless_without_a_key_is_refused_not_run_locally() -> None:
    no_key = PlanContext(False, {}, PRICES)
    for backend in ("pod", "serverless"):
        chosen = plan(task(), no_key, backend)  # type: ignore[arg-type]
        assert chosen.refused is not None and "needs a RunPod API key" in chosen.refused
        assert not chosen.over_budget
