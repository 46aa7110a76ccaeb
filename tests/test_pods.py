"""Pod lifecycle, replayed from cassettes/pods/ (recorded against the stand-ins), on both control-plane APIs
(GraphQL: ``test_x.yaml``; REST v2: ``test_x[rest].yaml``); fault tests that cassettes cannot hold (a create
that hangs after acting) run against the live stand-in."""

from __future__ import annotations

import socket
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from runpod_hybrid._http import HttpTransport
from runpod_hybrid.config import Settings
from runpod_hybrid.controlplane import GraphQLClient, GraphQLPodApi, NameTag
from runpod_hybrid.controlplane.graphql import create_variables
from runpod_hybrid.errors import (
    BadResponseError,
    BudgetExceededError,
    CapacityError,
    ConfigError,
    GraphQLError,
    NotFoundError,
    PodNotReadyError,
    RateLimitError,
    ServerError,
)
from runpod_hybrid.pods import CreateAttempt, Pods, PodSpec, build_request, tcp_accepts

from conftest import SENTINEL_KEY, ApiTarget, FakeTime
from runpod_standin import GATEWAY_PAGE, Fault, StandinServer

pytestmark = pytest.mark.both_control_planes

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeTestKeyForRunpodHybridTests rph-test"
TOKEN = "0a1b2c3d"
RTX4090 = "NVIDIA GeForce RTX 4090"
A4000 = "NVIDIA RTX A4000"
ADA2000 = "NVIDIA RTX 2000 Ada Generation"


def make_pods(
    target: ApiTarget,
    fake_time: FakeTime,
    settings: Settings | None = None,
    *,
    probe: Any = lambda _host, _port: True,
    read_timeout_s: float = 30.0,
) -> Pods:
    return Pods(
        target.pod_api(fake_time, read_timeout_s=read_timeout_s),
        settings or Settings(),
        public_key=lambda: PUBLIC_KEY,
        now=lambda: NOW,
        new_token=lambda: TOKEN,
        sleep=fake_time.sleep,
        clock=fake_time.clock,
        tcp_probe=probe,
    )


def sent_creates(target: ApiTarget) -> list[dict[str, Any]]:
    """The creates the SDK sent in this test, in order: GraphQL's input variables or REST v2's bodies."""
    if target.backend == "rest":
        return target.sent_calls("POST", "/pods")
    return [
        b["variables"]["input"]
        for b in target.sent_bodies()
        if b["operationName"] in ("CreateOnDemandPod", "CreateSpotPod")
    ]


def gpu_and_cloud(sent: dict[str, Any]) -> tuple[str, str]:
    """The GPU type and cloud of a sent create, in either API's shape."""
    if "gpu" in sent:
        return sent["gpu"]["id"], sent["cloud"]
    return sent["gpuTypeId"], sent["cloudType"]


def seed_pod(target: ApiTarget, **overrides: Any) -> str:
    """A pod in the stand-in (recording) or the id the cassette knows (replay)."""
    state = target.seed()
    pod_id = overrides.pop("id", "seededpod00001")
    if state is not None:
        state.add_pod(id=pod_id, **overrides)
    return pod_id


RUNNING_RUNTIME = {
    "uptimeInSeconds": 42,
    "ports": [
        {"ip": "203.0.113.7", "isIpPublic": True, "privatePort": 22, "publicPort": 40022, "type": "tcp"}
    ],
    "gpus": [{"id": "GPU-1", "gpuUtilPercent": 0, "memoryUtilPercent": 0}],
    "container": {"cpuPercent": 1, "memoryPercent": 2},
}


# --- create ------------------------------------------------------------------------------------------------


@pytest.mark.vcr
def test_create_sends_the_deadline_ssh_port_public_key_and_token(
    runpod_api: ApiTarget, fake_time: FakeTime
) -> None:
    pods = make_pods(runpod_api, fake_time)
    result = pods.create(
        PodSpec(
            name="train", gpu_types=(RTX4090,), image="runpod/pytorch:2.4.0", env={"HF_TOKEN": "hf_secret"}
        )
    )
    # The 24 h default deadline travels in the name, beside the client token; the watchdog is not armed yet.
    assert result.pod.name == f"train-rph-{TOKEN}-20261127T120000Z" and result.pod.client_token == TOKEN
    assert result.pod.tag == NameTag(TOKEN, datetime(2026, 11, 27, 12, 0, tzinfo=UTC), watchdog_armed=False)
    assert [a.outcome for a in result.attempts] == ["created"]
    [sent] = sent_creates(runpod_api)
    assert sent["startSsh"] is True
    if runpod_api.backend == "rest":  # no TTL field, ports a list, env a map
        assert "terminateAfter" not in sent and sent["ports"] == ["22/tcp"]
        assert "args" not in sent  # the image's own start command: the watchdog is armed over SSH
        env = sent["env"]
    else:
        assert sent["terminateAfter"] == "2026-11-27T12:00:00Z"  # still sent, in case RunPod ever honours it
        assert "dockerArgs" not in sent  # the image's own start command: the watchdog is armed over SSH
        assert sent["ports"] == "22/tcp" and sent["supportPublicIp"] is True
        env = {e["key"]: e["value"] for e in sent["env"]}
    assert env == {
        "HF_TOKEN": "hf_secret",
        "PUBLIC_KEY": PUBLIC_KEY,
        "RPH_CLIENT_TOKEN": TOKEN,
    }


def test_create_variables_carry_the_real_values() -> None:
    spec = PodSpec(gpu_types=(RTX4090,), extra_ports=("8888/http", "22/tcp"), max_hours=2, env={"A": "1"})
    from runpod_hybrid.pods import Candidate

    candidate = Candidate(RTX4090, "RTX 4090", "COMMUNITY", 1, 0.44, 0.3, "High")
    variables = create_variables(
        build_request(spec, candidate, TOKEN, settings=Settings(), public_key=PUBLIC_KEY, now=NOW)
    )["input"]
    assert variables["ports"] == "22/tcp,8888/http"
    assert variables["terminateAfter"] == "2026-11-26T14:00:00Z"
    assert variables["name"] == f"pod-rph-{TOKEN}-20261126T140000Z"
    assert {"key": "PUBLIC_KEY", "value": PUBLIC_KEY} in variables["env"]
    assert {"key": "A", "value": "1"} in variables["env"]
    assert variables["cloudType"] == "COMMUNITY" and variables["supportPublicIp"] is True
    no_deadline = create_variables(
        build_request(
            replace(spec, max_hours=0), candidate, TOKEN, settings=Settings(), public_key=PUBLIC_KEY, now=NOW
        )
    )["input"]
    assert "terminateAfter" not in no_deadline and no_deadline["name"] == f"pod-rph-{TOKEN}"


def test_a_job_pod_start_command_arms_the_watchdog_at_container_start() -> None:
    """With a boot hook, the start command is ours: it arms the watchdog at container start (the name says
    so), starts the hook, then hands over to RunPod's /start.sh."""
    from runpod_hybrid.pods import Candidate, start_command

    candidate = Candidate(RTX4090, "RTX 4090", "SECURE", 1, 0.69, 0.35, "High")
    spec = PodSpec(gpu_types=(RTX4090,), max_hours=1.5, boot="sh /workspace/.rph/boot.sh")
    request = build_request(spec, candidate, TOKEN, settings=Settings(), public_key=PUBLIC_KEY, now=NOW)
    deadline = datetime(2026, 11, 26, 13, 30, tzinfo=UTC)
    assert request.docker_args == start_command("/workspace", deadline, "sh /workspace/.rph/boot.sh")
    assert request.docker_args.startswith("bash -c '") and request.docker_args.endswith("exec /start.sh'")
    assert "watchdog.sh boot 1795699800" in request.docker_args  # the deadline, in epoch seconds
    assert request.name == f"pod-rph-{TOKEN}-20261126T133000Z-wd"
    with pytest.raises(ValueError, match="exclusive"):
        build_request(
            replace(spec, docker_args="python serve.py"),
            candidate,
            TOKEN,
            settings=Settings(),
            public_key=PUBLIC_KEY,
            now=NOW,
        )


@pytest.mark.vcr
def test_falls_back_across_three_candidates_through_two_capacity_shapes(
    runpod_api: ApiTarget, fake_time: FakeTime
) -> None:
    runpod_api.inject("CreateOnDemandPod", Fault.supply_constraint(), Fault.null_data())
    seen: list[CreateAttempt] = []
    result = make_pods(runpod_api, fake_time).create(
        PodSpec(gpu_types=(RTX4090, A4000, ADA2000)), on_attempt=seen.append
    )
    assert [(a.gpu_type_id, a.outcome) for a in result.attempts] == [
        (RTX4090, "no_capacity"),
        (A4000, "no_capacity"),
        (ADA2000, "created"),
    ]
    assert seen == list(result.attempts)
    assert [gpu_and_cloud(c)[0] for c in sent_creates(runpod_api)] == [RTX4090, A4000, ADA2000]
    assert len({c["name"] for c in sent_creates(runpod_api)}) == 1  # one token for the whole create
    assert fake_time.sleeps == []


@pytest.mark.vcr
def test_falls_back_to_the_next_cloud_type(runpod_api: ApiTarget, fake_time: FakeTime) -> None:
    runpod_api.inject("CreateOnDemandPod", Fault.capacity_message())
    result = make_pods(runpod_api, fake_time).create(
        PodSpec(gpu_types=(RTX4090,), cloud_type="SECURE", fallback_cloud_types=("COMMUNITY",))
    )
    assert [(a.cloud_type, a.outcome) for a in result.attempts] == [
        ("SECURE", "no_capacity"),
        ("COMMUNITY", "created"),
    ]
    assert [gpu_and_cloud(c)[1] for c in sent_creates(runpod_api)] == ["SECURE", "COMMUNITY"]


@pytest.mark.vcr
def test_nothing_in_stock_is_a_capacity_error_without_a_create(
    runpod_api: ApiTarget, fake_time: FakeTime
) -> None:
    with pytest.raises(CapacityError, match="rph gpus"):
        make_pods(runpod_api, fake_time).create(PodSpec(gpu_types=("NVIDIA H100 NVL",)))
    assert sent_creates(runpod_api) == []


@pytest.mark.vcr
def test_over_the_per_pod_cap_is_refused_before_any_create(
    runpod_api: ApiTarget, fake_time: FakeTime
) -> None:
    settings = Settings(max_pod_usd_per_hour=1.0)
    with pytest.raises(BudgetExceededError) as info:
        make_pods(runpod_api, fake_time, settings).create(PodSpec(gpu_types=(RTX4090,), gpu_count=2))
    assert info.value.cost_usd == pytest.approx(1.38) and info.value.cap_usd == 1.0
    assert "$1.38/h" in str(info.value) and "max_pod_usd_per_hour" in str(info.value)
    assert sent_creates(runpod_api) == []


@pytest.mark.vcr
def test_over_the_total_cap_is_refused_before_any_create(runpod_api: ApiTarget, fake_time: FakeTime) -> None:
    seed_pod(runpod_api, costPerHr=4.0, adjustedCostPerHr=4.0)
    settings = Settings(max_total_usd_per_hour=4.5)
    with pytest.raises(BudgetExceededError, match=r"Running pods cost \$4\.00/h"):
        make_pods(runpod_api, fake_time, settings).create(PodSpec(gpu_types=(RTX4090,)))
    assert sent_creates(runpod_api) == []


@pytest.mark.vcr
@pytest.mark.graphql_only
def test_spot_create_bids_the_current_minimum(runpod_api: ApiTarget, fake_time: FakeTime) -> None:
    result = make_pods(runpod_api, fake_time).create(PodSpec(gpu_types=(RTX4090,), spot=True))
    assert result.pod.is_spot
    [sent] = sent_creates(runpod_api)
    assert sent["bidPerGpu"] == 0.35 and sent["name"] == f"pod-rph-{TOKEN}-20261127T120000Z"


@pytest.mark.vcr
@pytest.mark.graphql_only
def test_spot_bid_below_minimum_is_refused_before_create(runpod_api: ApiTarget, fake_time: FakeTime) -> None:
    with pytest.raises(ConfigError, match=r"below the current minimum bid \$0\.350"):
        make_pods(runpod_api, fake_time).create(PodSpec(gpu_types=(RTX4090,), spot=True, bid_per_gpu_usd=0.1))
    assert sent_creates(runpod_api) == []


@pytest.mark.vcr
def test_unknown_gpu_suggests_the_nearest_names(runpod_api: ApiTarget, fake_time: FakeTime) -> None:
    with pytest.raises(ConfigError, match=r"Did you mean.*NVIDIA GeForce RTX 4090"):
        make_pods(runpod_api, fake_time).create(PodSpec(gpu_types=("NVIDIA RTX 4090",)))


HTML_200 = "<html><body><h1>Checking your browser</h1></body></html>"
LOST = "Internal server error: could not serialize the pod"  # a GraphQL error other than the generic one
GENERIC = "Something went wrong. Please try again later or contact support."
RATE_LIMITED = '{"errors": [{"message": "Too many requests"}]}'


def rate_limited() -> Fault:
    return Fault.http(429, RATE_LIMITED, "application/json", **{"Retry-After": "2"})


# Every answer after which the server may have made the pod. `faults` are the create's answers in order
# (`.applied()`: the pod was made, then this answer came back), `lag` how many pod lists miss a new pod.
# Expected: the pods in the account afterwards, creates sent, and the outcomes, or the error raised.
LOST_ANSWERS = [
    ("html-200", [Fault.http(200, HTML_200).applied()], 0, 1, 1, ["recovered"], None),
    ("truncated-json", [Fault.truncated()], 0, 1, 1, ["recovered"], None),
    ("graphql-error", [Fault.graphql_error(LOST).applied()], 0, 1, 1, ["recovered"], None),
    ("generic-graphql-error", [Fault.graphql_error(GENERIC).applied()], 0, 1, 1, ["recovered"], None),
    ("429", [rate_limited().applied()], 0, 1, 1, ["recovered"], None),
    ("five-429s", [rate_limited().applied() for _ in range(5)], 0, 1, 1, ["recovered"], None),
    ("timeout", [Fault.apply_then_hang()], 0, 1, 1, ["recovered"], None),
    ("dropped-connection", [Fault.drop_after_apply()], 0, 1, 1, ["recovered"], None),
    ("502", [Fault.http(502, GATEWAY_PAGE).applied()], 0, 1, 1, ["recovered"], None),
    (
        "503-json",
        [Fault.http(503, '{"error": "unavailable"}', "application/json").applied()],
        0,
        1,
        1,
        ["recovered"],
        None,
    ),
    ("lagging-list", [Fault.http(502, GATEWAY_PAGE).applied()], 3, 1, 1, ["recovered"], None),
    # The same answers when no pod was made: no second create, and an error that says none exists ...
    ("502-no-pod", [Fault.http(502, GATEWAY_PAGE)], 0, 0, 1, ["lost"], ServerError),
    ("html-200-no-pod", [Fault.http(200, HTML_200)], 0, 0, 1, ["lost"], BadResponseError),
    ("graphql-error-no-pod", [Fault.graphql_error(LOST)], 0, 0, 1, ["lost"], GraphQLError),
    # ... except after a 429, RunPod's "not now": sent again once no pod is found, as Retry-After says.
    ("429-no-pod", [rate_limited()], 0, 1, 2, ["rate_limited", "created"], None),
    (
        "five-429s-no-pod",
        [rate_limited() for _ in range(5)],
        0,
        0,
        5,
        ["rate_limited"] * 4 + ["lost"],
        RateLimitError,
    ),
    # A list that lags past the settle period: still never a second create; the error names the token.
    (
        "lag-past-the-settle-period",
        [Fault.http(502, GATEWAY_PAGE).applied()],
        100,
        1,
        1,
        ["lost"],
        ServerError,
    ),
]


@pytest.mark.parametrize(
    ("faults", "lag", "pods_after", "creates", "outcomes", "error"),
    [case[1:] for case in LOST_ANSWERS],
    ids=[case[0] for case in LOST_ANSWERS],
)
def test_a_lost_answer_never_makes_a_second_pod(
    standin: StandinServer,
    fake_time: FakeTime,
    faults: list[Fault],
    lag: int,
    pods_after: int,
    creates: int,
    outcomes: list[str],
    error: type[Exception] | None,
) -> None:
    standin.state.faults["CreateOnDemandPod"].extend(faults)
    standin.state.list_lag = lag
    target = ApiTarget(standin.url, SENTINEL_KEY, standin)
    seen: list[CreateAttempt] = []
    pods = make_pods(target, fake_time, read_timeout_s=0.3)
    if error is None:
        result = pods.create(PodSpec(gpu_types=(RTX4090,)), on_attempt=seen.append)
        assert result.pod.id in standin.state.pods and result.pod.client_token == TOKEN
    else:
        with pytest.raises(error) as info:
            pods.create(PodSpec(gpu_types=(RTX4090,)), on_attempt=seen.append)
        note = "\n".join(info.value.__notes__)
        assert f"No pod exists for this create: none with client token {TOKEN} appeared" in note
        assert f"-rph-{TOKEN}" in note
    assert len(standin.state.pods) == pods_after
    assert len(standin.state.calls_of("CreateOnDemandPod")) == creates
    assert [a.outcome for a in seen] == outcomes


def test_a_lagging_list_is_looked_at_over_the_settle_period(
    standin: StandinServer, fake_time: FakeTime
) -> None:
    """The pod appears in the list only at the fourth look: the waits between looks are the settle period's."""
    standin.state.faults["CreateOnDemandPod"].append(Fault.http(502, GATEWAY_PAGE).applied())
    standin.state.list_lag = 3
    target = ApiTarget(standin.url, SENTINEL_KEY, standin)
    result = make_pods(target, fake_time).create(PodSpec(gpu_types=(RTX4090,)))
    assert [a.outcome for a in result.attempts] == ["recovered"]
    assert fake_time.sleeps == [1.0, 2.0, 4.0]


def test_a_429_without_a_pod_waits_retry_after_before_sending_again(
    standin: StandinServer, fake_time: FakeTime
) -> None:
    standin.state.faults["CreateOnDemandPod"].append(rate_limited())
    target = ApiTarget(standin.url, SENTINEL_KEY, standin)
    make_pods(target, fake_time).create(PodSpec(gpu_types=(RTX4090,)))
    settle = [1.0, 2.0, 4.0, 8.0, 15.0]
    assert fake_time.sleeps == [*settle, 2.0]  # looked for the pod first, then waited as RunPod asked


# --- lifecycle ---------------------------------------------------------------------------------------------


@pytest.mark.vcr
def test_stop_start_terminate_and_terminate_again(runpod_api: ApiTarget, fake_time: FakeTime) -> None:
    pods = make_pods(runpod_api, fake_time)
    pod = pods.create(PodSpec(gpu_types=(A4000,))).pod
    assert pods.stop(pod.id).status == "EXITED"
    assert pods.get(pod.id).status == "EXITED"
    assert pods.start(pod.id).status == "RUNNING"
    assert [p.id for p in pods.list(ours_only=True)] == [pod.id]
    pods.terminate(pod.id)
    with pytest.raises(NotFoundError, match="already terminated"):
        pods.terminate(pod.id)
    with pytest.raises(NotFoundError, match="rph pods list"):
        pods.get(pod.id)


@pytest.mark.vcr
def test_list_filters(runpod_api: ApiTarget, fake_time: FakeTime) -> None:
    seed_pod(runpod_api, id="aaaaaaaaaaaaa1", name="notebook", desiredStatus="EXITED")
    seed_pod(runpod_api, id="bbbbbbbbbbbbb2", name="train-rph-00ff00ff")
    pods = make_pods(runpod_api, fake_time)
    assert {p.id for p in pods.list()} == {"aaaaaaaaaaaaa1", "bbbbbbbbbbbbb2"}
    assert [p.id for p in pods.list(status="exited")] == ["aaaaaaaaaaaaa1"]
    assert [p.id for p in pods.list(ours_only=True)] == ["bbbbbbbbbbbbb2"]
    assert [p.id for p in pods.list(name="NOTE")] == ["aaaaaaaaaaaaa1"]


@pytest.mark.vcr
def test_resume_on_a_full_host_advises(runpod_api: ApiTarget, fake_time: FakeTime) -> None:
    pod_id = seed_pod(runpod_api, desiredStatus="EXITED")
    runpod_api.inject(
        "ResumePod", Fault.capacity_message("There are not enough free GPUs on the host machine.")
    )
    with pytest.raises(CapacityError, match="volume disk is lost on terminate"):
        make_pods(runpod_api, fake_time).start(pod_id)


@pytest.mark.vcr
@pytest.mark.graphql_only
def test_start_of_a_spot_pod_bids_again(runpod_api: ApiTarget, fake_time: FakeTime) -> None:
    pod_id = seed_pod(
        runpod_api, desiredStatus="EXITED", podType="INTERRUPTABLE", costPerHr=0.35, adjustedCostPerHr=0.35
    )
    make_pods(runpod_api, fake_time).start(pod_id)
    resumes = runpod_api.sent_bodies("ResumeSpotPod")
    assert resumes and resumes[0]["variables"]["input"] == {"podId": pod_id, "gpuCount": 1, "bidPerGpu": 0.35}


@pytest.mark.vcr
def test_get_of_an_unknown_pod(runpod_api: ApiTarget, fake_time: FakeTime) -> None:
    with pytest.raises(NotFoundError, match="No pod 'nosuchpod12345'"):
        make_pods(runpod_api, fake_time).get("nosuchpod12345")


# --- deadlines: the client reaper, extend, spend, and what RunPod (the stand-in) does with them -----------


def ours(name: str, deadline: str | None = None, *, armed: bool = False) -> str:
    return f"{name}-rph-0000000{len(name)}" + (f"-{deadline}" if deadline else "") + ("-wd" if armed else "")


def test_every_listing_stops_our_pods_past_their_deadline_and_warns_about_unguarded_ones(
    standin: StandinServer, fake_time: FakeTime
) -> None:
    """NOW is 2026-11-26 12:00 UTC. Only pods of ours, past their deadline, that may still bill a GPU stop."""
    state = standin.state
    seed = {
        "past": ours("a", "20261126T110000Z"),
        "past-armed": ours("bb", "20261126T115959Z", armed=True),
        "due-now": ours("ccc", "20261126T120000Z"),
        "future": ours("dddd", "20261126T140000Z"),
        "future-armed": ours("eeeee", "20261126T140000Z", armed=True),
        "no-deadline": ours("ffffff"),
        "not-ours": "notebook-20261126T110000Z",
    }
    for pod_id, name in seed.items():
        state.add_pod(id=pod_id, name=name, costPerHr=0.5, adjustedCostPerHr=0.5)
    state.add_pod(id="past-stopped", name=ours("ggggggg", "20261126T110000Z"), desiredStatus="EXITED")
    pods = make_pods(ApiTarget(standin.url, SENTINEL_KEY, standin), fake_time)

    overview = pods.overview()
    assert sorted(overview.stopped) == ["due-now", "past", "past-armed"]
    assert sorted(v["input"]["podId"] for v in state.calls_of("StopPod")) == ["due-now", "past", "past-armed"]
    status = {g.pod.id: g.pod.status for g in overview.pods}
    assert status == {
        **dict.fromkeys(seed, "RUNNING"),
        **dict.fromkeys(overview.stopped, "EXITED"),
        "past-stopped": "EXITED",
    }
    guards = {g.pod.id: g for g in overview.pods}
    assert guards["future"].guards == ("client reaper",)
    assert guards["future-armed"].guards == ("pod watchdog", "client reaper")
    assert guards["not-ours"].guards == () and guards["not-ours"].warning is None
    assert (guards["future"].hours_left, guards["future"].projected_usd) == (2.0, 1.0)
    assert guards["past"].stopped_now and guards["past"].usd_per_hour == 0
    assert [w.split(" ")[1].rstrip("'s") for w in overview.warnings] == ["future", "no-deadline"]
    assert "watchdog was never armed" in overview.warnings[0] and "no deadline" in overview.warnings[1]
    assert overview.running_usd_per_hour == 2.0  # the four still running

    # Stopped once: later listings, and list(), find nothing more to stop.
    assert [p.id for p in pods.list(ours_only=True, status="RUNNING")] == [
        "future",
        "future-armed",
        "no-deadline",
    ]
    assert len(state.calls_of("StopPod")) == 3


def test_get_stops_a_pod_of_ours_past_its_deadline_and_start_refuses_it(
    standin: StandinServer, fake_time: FakeTime
) -> None:
    standin.state.add_pod(id="late", name=ours("late", "20261126T100000Z", armed=True))
    pods = make_pods(ApiTarget(standin.url, SENTINEL_KEY, standin), fake_time)
    guard = pods.guard("late")
    assert guard.pod.status == "EXITED" and guard.stopped_now and guard.hours_left == 0
    with pytest.raises(ConfigError, match=r"past its deadline .* `rph pods extend late --hours N`"):
        pods.start("late")
    assert standin.state.calls_of("ResumePod") == []
    extended = pods.extend("late", hours=1.5)  # from now, since the old deadline has passed
    assert extended.deadline == datetime(2026, 11, 26, 13, 30, tzinfo=UTC)
    assert (
        extended.warning is not None
        and "once started, its watchdog keeps the old deadline" in extended.warning
    )
    assert standin.state.pods["late"]["name"] == "late-rph-00000004-20261126T133000Z-wd"
    assert pods.start("late").status == "RUNNING"
    standin.state.add_pod(id="theirs", name="notebook")
    with pytest.raises(ConfigError, match="not created by runpod-hybrid"):
        pods.extend("theirs", hours=1)


def test_spend_shows_what_bills_with_guards_balance_and_caps(
    standin: StandinServer, fake_time: FakeTime
) -> None:
    state = standin.state
    state.add_pod(
        id="train", name=ours("train", "20261126T150000Z", armed=True), costPerHr=0.69, adjustedCostPerHr=0.69
    )
    state.add_pod(id="idle", name="notebook", costPerHr=0.24, adjustedCostPerHr=0.24)
    state.add_pod(id="old", name=ours("old", "20261126T110000Z"), costPerHr=2.0, adjustedCostPerHr=2.0)
    state.add_pod(id="parked", name="parked", desiredStatus="EXITED", costPerHr=0.5, adjustedCostPerHr=0.5)
    spend = make_pods(
        ApiTarget(standin.url, SENTINEL_KEY, standin), fake_time, Settings(max_pod_hours=6)
    ).spend()
    # "old" was past its deadline: stopped first.
    assert [g.pod.id for g in spend.running] == ["train", "idle"]
    assert spend.stopped == ("old",)
    assert spend.usd_per_hour == 0.93
    train = spend.running[0]
    assert (train.hours_left, train.projected_usd, train.guards) == (
        3.0,
        2.07,
        ("pod watchdog", "client reaper"),
    )
    assert (spend.balance_usd, spend.account_usd_per_hour) == (41.5, pytest.approx(0.93))  # RunPod's figures
    assert (spend.max_pod_usd_per_hour, spend.max_total_usd_per_hour, spend.max_pod_hours) == (5.0, 20.0, 6.0)


def test_the_stand_in_accepts_terminate_after_and_ignores_it_as_runpod_does(
    standin: StandinServer, fake_time: FakeTime
) -> None:
    from runpod_hybrid.controlplane import documents as gql
    from runpod_hybrid.pods import Candidate

    client = GraphQLClient(ApiTarget(standin.url, SENTINEL_KEY, standin).transport(fake_time), standin.url)
    api = GraphQLPodApi(client)
    candidate = Candidate(RTX4090, "RTX 4090", "SECURE", 1, 0.69, 0.35, "High")
    long_ago = datetime(2020, 1, 1, tzinfo=UTC)
    request = build_request(
        PodSpec(), candidate, TOKEN, settings=Settings(), public_key=PUBLIC_KEY, now=long_ago
    )
    pod = api.create_pod(request)  # its terminateAfter passed years ago
    assert standin.state.pods[pod.id]["terminateAfter"] == "2020-01-02T00:00:00Z"
    assert api.get_pod(pod.id).status == "RUNNING"  # type: ignore[union-attr]
    # Only RFC 3339 passes RunPod's DateTime scalar.
    variables = create_variables(request)
    variables["input"]["terminateAfter"] = "tomorrow"
    with pytest.raises(GraphQLError, match="terminateAfter"):
        client.execute(gql.CREATE_ON_DEMAND_POD, variables)


def test_a_pod_scoped_key_may_stop_its_own_pod_and_nothing_else(standin: StandinServer) -> None:
    import requests

    mine, other = standin.state.add_pod(id="mine"), standin.state.add_pod(id="other")
    key = standin.state.add_pod_key(mine["id"])

    def call(document: str, operation: str, pod_id: str, with_key: str = key) -> requests.Response:
        body = {"query": document, "operationName": operation, "variables": {"input": {"podId": pod_id}}}
        return requests.post(
            standin.url, json=body, headers={"Authorization": f"Bearer {with_key}"}, timeout=10
        )

    from runpod_hybrid.controlplane import documents as gql

    assert call(gql.TERMINATE_POD, "TerminatePod", "mine").status_code == 403
    assert call(gql.STOP_POD, "StopPod", "other").status_code == 403
    assert call(gql.STOP_POD, "StopPod", "mine", with_key="rpa_NOT_A_KEY").status_code == 401
    assert (mine["desiredStatus"], other["desiredStatus"]) == ("RUNNING", "RUNNING")
    answer = call(gql.STOP_POD, "StopPod", "mine")
    assert answer.status_code == 200 and answer.json()["data"]["podStop"]["desiredStatus"] == "EXITED"


# --- readiness, telemetry, ssh ------------------------------------------------------------------------------


@pytest.mark.vcr
def test_wait_names_a_crash_loop(runpod_api: ApiTarget, fake_time: FakeTime) -> None:
    pod_id = seed_pod(
        runpod_api, runtime={"uptimeInSeconds": 0, "ports": None, "gpus": [], "container": None}
    )
    messages: list[str] = []
    with pytest.raises(PodNotReadyError) as info:
        make_pods(runpod_api, fake_time).wait_until_ready(pod_id, poll_s=60, on_progress=messages.append)
    assert info.value.reason == "crash_loop"
    assert "crash looping" in str(info.value)
    assert fake_time.sleeps == [60, 60, 60, 60]
    assert all("container starting" in m for m in messages)


@pytest.mark.vcr
def test_wait_until_ssh_accepts(runpod_api: ApiTarget, fake_time: FakeTime) -> None:
    pod_id = seed_pod(runpod_api)
    state = runpod_api.seed()
    if state is not None:
        state.pod_timeline[pod_id].extend(
            [
                {"runtime": None},
                {"runtime": {**RUNNING_RUNTIME, "uptimeInSeconds": 0, "ports": None}},
                {"runtime": RUNNING_RUNTIME},
                {},
            ]
        )
    probes = iter([False, True])
    pods = make_pods(runpod_api, fake_time, probe=lambda _h, _p: next(probes))
    messages: list[str] = []
    pod = pods.wait_until_ready(pod_id, on_progress=messages.append)
    assert pod.ssh is not None and (pod.ssh.host, pod.ssh.port) == ("203.0.113.7", 40022)
    assert fake_time.sleeps == [1.0, 1.0, 1.0]  # readiness is read once a second: the user waits on it
    assert [m.split(": ")[1].split(" (")[0] for m in messages] == [
        "waiting for container",
        "container starting",
        "waiting for sshd",
        "ready",
    ]


@pytest.mark.vcr
def test_wait_names_an_exited_pod(runpod_api: ApiTarget, fake_time: FakeTime) -> None:
    pod_id = seed_pod(
        runpod_api, desiredStatus="EXITED", lastStatusChange="Exited by Runpod: container exited"
    )
    with pytest.raises(PodNotReadyError, match="stopped instead of starting") as info:
        make_pods(runpod_api, fake_time).wait_until_ready(pod_id)
    assert info.value.reason == "exited"
    if runpod_api.backend == "graphql":  # REST v2 has no status text
        assert "container exited" in str(info.value)


@pytest.mark.vcr
def test_wait_names_a_missing_public_ip(runpod_api: ApiTarget, fake_time: FakeTime) -> None:
    private = {
        **RUNNING_RUNTIME,
        "ports": [{**RUNNING_RUNTIME["ports"][0], "isIpPublic": False, "ip": "10.0.0.2"}],
    }
    pod_id = seed_pod(runpod_api, runtime=private, ports="22/tcp")
    with pytest.raises(PodNotReadyError, match="supportPublicIp") as info:
        make_pods(runpod_api, fake_time).wait_until_ready(pod_id)
    assert info.value.reason == "no_public_ip"


@pytest.mark.vcr
def test_wait_times_out_with_the_last_state(runpod_api: ApiTarget, fake_time: FakeTime) -> None:
    pod_id = seed_pod(runpod_api, runtime=RUNNING_RUNTIME, ports="22/tcp")
    with pytest.raises(PodNotReadyError, match="last state: waiting for sshd") as info:
        make_pods(runpod_api, fake_time, probe=lambda _h, _p: False).wait_until_ready(
            pod_id, timeout_s=12, poll_s=5
        )
    assert info.value.reason == "timeout" and fake_time.sleeps == [5, 5]


@pytest.mark.vcr
def test_telemetry_and_ssh_endpoint(runpod_api: ApiTarget, fake_time: FakeTime) -> None:
    pod_id = seed_pod(
        runpod_api,
        runtime={**RUNNING_RUNTIME, "uptimeInSeconds": 3600},
        costPerHr=0.69,
        adjustedCostPerHr=0.69,
        ports="22/tcp",
        latestTelemetry={
            "state": "RUNNING",
            "time": "2026-11-26T12:00:00Z",
            "cpuUtilization": 3.5,
            "memoryUtilization": 10.0,
            "averageGpuMetrics": None,
            "individualGpuMetrics": [
                {
                    "id": "GPU-1",
                    "percentUtilization": 88.0,
                    "memoryUtilization": 50.0,
                    "temperatureCelcius": 65.0,
                    "powerWatts": 300.0,
                }
            ],
        },
    )
    pods = make_pods(runpod_api, fake_time)
    telemetry = pods.telemetry(pod_id)
    assert telemetry.cost_since_start_usd == 0.69
    if runpod_api.backend == "rest":  # utilisation from runtime; what is missing is said
        assert telemetry.gpus[0].util_percent == 0.0 and telemetry.gpus[0].temperature_c is None
        assert any("temperature" in m and "GraphQL" in m for m in telemetry.missing)
    else:
        assert telemetry.gpus[0].util_percent == 88.0 and telemetry.gpus[0].temperature_c == 65.0
        assert telemetry.missing == ()
    endpoint = pods.ssh_endpoint(pod_id)
    assert (endpoint.user, endpoint.host, endpoint.port) == ("root", "203.0.113.7", 40022)


# --- offline ------------------------------------------------------------------------------------------------


def offline_pods(settings: Settings) -> Pods:
    """Pods whose API can never be reached: a transport with no key to an address nothing listens on."""
    api = GraphQLPodApi(GraphQLClient(HttpTransport(None), "http://127.0.0.1:9/graphql"))
    return Pods(
        api,
        settings,
        public_key=lambda: pytest.fail("a preview must not make an SSH key"),
        existing_public_key=lambda: None,
        now=lambda: NOW,
        new_token=lambda: TOKEN,
    )


def test_preview_needs_no_api_and_bounds_cost() -> None:
    preview = offline_pods(Settings(max_pod_usd_per_hour=2.5)).preview(
        PodSpec(
            gpu_types=(RTX4090, A4000),
            cloud_type="SECURE",
            fallback_cloud_types=("COMMUNITY",),
            env={"HF_TOKEN": "hf_secret"},
        )
    )
    calls = [
        (c.operation, c.arguments["input"]["gpuTypeId"], c.arguments["input"]["cloudType"])
        for c in preview.calls
    ]
    assert calls == [
        ("podFindAndDeployOnDemand", RTX4090, "SECURE"),
        ("podFindAndDeployOnDemand", A4000, "SECURE"),
        ("podFindAndDeployOnDemand", RTX4090, "COMMUNITY"),
        ("podFindAndDeployOnDemand", A4000, "COMMUNITY"),
    ]
    env = {e["key"]: e["value"] for e in preview.calls[0].arguments["input"]["env"]}
    assert env["HF_TOKEN"] == "<redacted>" and env["RPH_CLIENT_TOKEN"] == "<redacted>"
    assert preview.max_usd_per_hour == 2.5
    spot = offline_pods(Settings()).preview(PodSpec(gpu_types=(RTX4090,), spot=True, bid_per_gpu_usd=0.3))
    assert [c.operation for c in spot.calls] == ["podRentInterruptable"]
    with pytest.raises(ConfigError, match="--gpu"):
        offline_pods(Settings()).preview(PodSpec())


def test_tcp_probe_against_a_real_socket() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert tcp_accepts("127.0.0.1", port)
    assert not tcp_accepts("127.0.0.1", port, timeout_s=0.5)
