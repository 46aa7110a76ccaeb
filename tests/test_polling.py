"""The batch map's poll schedule, on simulated completion times (pure: no endpoint, no clock)."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable

import pytest

from runpod_hybrid.serverless.polling import PollSchedule

Draw = Callable[[random.Random], float]


def cost(offsets: Callable[[int], float], jobs: list[float]) -> tuple[float, float]:
    """Mean polls per job, and mean time between a job finishing and the poll that sees it."""
    polls = delay = 0.0
    for took in jobs:
        poll = 0
        while offsets(poll) < took:
            poll += 1
        polls += poll + 1
        delay += offsets(poll) - took
    return polls / len(jobs), delay / len(jobs)


def mean_then_backoff(mean_s: float) -> Callable[[int], float]:
    """The schedule this one replaced: first poll at the mean, then back off from half of it, doubling."""
    return lambda poll: mean_s + sum(max(0.05, mean_s / 2) * 2**k for k in range(poll))


DISTRIBUTIONS: dict[str, Draw] = {
    "worker pick-up spread": lambda rng: rng.uniform(0.05, 0.35),  # what the local endpoint shows
    "steady task": lambda rng: rng.gauss(2.0, 0.1),
    "long tail": lambda rng: rng.lognormvariate(-1.0, 0.6),
    "queueing": lambda rng: 0.02 + rng.expovariate(5),
}


@pytest.mark.parametrize("name", DISTRIBUTIONS)
def test_learnt_schedule_sees_jobs_sooner_with_no_more_polls(name: str) -> None:
    draw, rng = DISTRIBUTIONS[name], random.Random(7)
    schedule = PollSchedule()
    for _ in range(64):
        schedule.observe(draw(rng))
    jobs = [draw(rng) for _ in range(4000)]
    old_polls, old_delay = cost(mean_then_backoff(sum(jobs) / len(jobs)), jobs)
    new_polls, new_delay = cost(schedule.offset_s, jobs)
    assert new_polls <= 1.03 * old_polls
    assert new_delay <= 1.02 * old_delay
    assert new_polls + new_delay / 0.1 < old_polls + old_delay / 0.1  # better on the two together


def test_on_the_pick_up_spread_it_saves_a_tenth_of_the_polls() -> None:
    rng = random.Random(3)
    schedule = PollSchedule()
    for _ in range(64):
        schedule.observe(rng.uniform(0.05, 0.35))
    jobs = [rng.uniform(0.05, 0.35) for _ in range(4000)]
    old_polls, _ = cost(mean_then_backoff(0.2), jobs)
    new_polls, _ = cost(schedule.offset_s, jobs)
    assert new_polls < 0.93 * old_polls


def test_before_enough_samples_it_polls_at_the_mean_then_backs_off() -> None:
    schedule = PollSchedule(initial_s=0.25)
    assert [round(schedule.offset_s(p), 4) for p in range(3)] == [0.25, 0.375, 0.625]
    schedule.observe(1.0)
    assert schedule.offset_s(0) == 1.0


def test_gaps_are_bounded_for_long_and_for_instant_jobs() -> None:
    slow = PollSchedule(max_gap_s=5.0)
    for _ in range(16):
        slow.observe(600.0)
    offsets = [slow.offset_s(p) for p in range(14)]
    assert offsets[0] == 600.0
    gaps = [b - a for a, b in itertools.pairwise(offsets)]
    assert all(0.0499 <= gap <= 5.0 for gap in gaps), gaps
    assert gaps[-1] == 5.0
    instant = PollSchedule()
    for _ in range(16):
        instant.observe(0.001)
    assert instant.offset_s(2) - instant.offset_s(1) == pytest.approx(0.05)
