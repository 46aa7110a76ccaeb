"""`rph pods list|get|reap|extend|create` and `rph spend` against the API stand-in: deadlines, the guards that
hold them, $/h and projected cost, and the client reaper in every listing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from runpod_hybrid.cli import main

from conftest import SENTINEL_KEY
from runpod_standin import StandinServer


def tag(token: str, deadline: datetime, *, armed: bool = False) -> str:
    return f"-rph-{token}-{deadline:%Y%m%dT%H%M%SZ}" + ("-wd" if armed else "")


@pytest.fixture
def account(standin: StandinServer, monkeypatch: pytest.MonkeyPatch) -> StandinServer:
    """An account with a pod of ours past its deadline, one due in 2 h whose watchdog was never armed, one
    guarded both ways due in 3 h, and somebody else's."""
    now = datetime.now(UTC).replace(microsecond=0)
    state = standin.state
    state.add_pod(id="late", name="late" + tag("0000000a", now - timedelta(minutes=5)), costPerHr=1.0)
    state.add_pod(id="unarmed", name="dev" + tag("0000000b", now + timedelta(hours=2)), costPerHr=0.5)
    state.add_pod(
        id="guarded", name="train" + tag("0000000c", now + timedelta(hours=3), armed=True), costPerHr=0.69
    )
    state.add_pod(id="theirs", name="notebook", costPerHr=0.24)
    for pod in state.pods.values():
        pod["adjustedCostPerHr"] = pod["costPerHr"]
    monkeypatch.setenv("RPH_GRAPHQL_URL", standin.url)
    monkeypatch.setenv("RUNPOD_API_KEY", SENTINEL_KEY)
    return standin


def rph(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert SENTINEL_KEY not in out + err
    return code, out, err


def test_list_stops_ours_past_the_deadline_and_shows_each_pods_guards(
    account: StandinServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = rph(capsys, "pods", "list")
    assert code == 0
    assert account.state.pods["late"]["desiredStatus"] == "EXITED"
    assert "stopped (past its deadline): late" in out
    assert "STOPPED NOW: past its deadline" in out
    assert "(in 3.0h, $2.07 more); held by pod watchdog + client reaper" in out
    assert "(in 2.0h, $1.00 more); held by client reaper" in out
    assert "warning: Pod unarmed's watchdog was never armed" in out
    assert "no deadline; held by nothing of ours" in out
    assert "4 pod(s); running ones cost $1.43/h" in out
    code, out, _ = rph(capsys, "pods", "list", "--json")
    payload = json.loads(out)
    assert code == 0 and payload["stopped"] == []  # stopped once, by the first listing
    guards = {g["pod"]["id"]: g for g in payload["pods"]}
    assert guards["guarded"]["guards"] == ["pod watchdog", "client reaper"]
    assert guards["guarded"]["projected_usd"] == pytest.approx(2.07, abs=0.01)


def test_reap_get_extend_and_spend(account: StandinServer, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = rph(capsys, "pods", "reap", "--json")
    payload = json.loads(out)
    assert code == 0 and payload["stopped"] == ["late"]
    assert {g["pod"]["id"] for g in payload["pods"]} == {"late", "unarmed", "guarded"}  # ours only
    assert any("unarmed" in w for w in payload["warnings"])

    code, out, _ = rph(capsys, "pods", "extend", "guarded", "--hours", "1", "--json")
    extended = json.loads(out)
    assert code == 0 and extended["hours_left"] == pytest.approx(4.0, abs=0.01)
    assert account.state.pods["guarded"]["name"].endswith("-wd")
    assert "watchdog on pod guarded still holds the old deadline" in extended["warning"]  # no SSH here

    code, out, _ = rph(capsys, "pods", "get", "unarmed")
    assert code == 0 and "held by client reaper" in out and "warning: Pod unarmed's watchdog" in out

    code, out, _ = rph(capsys, "spend")
    assert code == 0
    assert "total $1.43/h for GPUs" in out
    assert "balance of $41.50" in out
    assert "caps: $5.00/h per pod, $20.00/h in all" in out and "stop after 24h" in out
    code, out, _ = rph(capsys, "spend", "--json")
    spend = json.loads(out)
    assert [g["pod"]["id"] for g in spend["running"]] == ["unarmed", "guarded", "theirs"]
    assert spend["balance_usd"] == 41.5 and spend["max_pod_hours"] == 24.0


def test_create_names_its_deadline_and_guards(
    account: StandinServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = rph(
        capsys, "pods", "create", "--gpu", "NVIDIA RTX A4000", "--max-hours", "2", "--name", "cli", "--json"
    )
    assert code == 0, err
    created = json.loads(out)
    assert created["guards"] == ["client reaper"] and created["projected_usd"] == pytest.approx(
        0.48, abs=0.01
    )
    assert "never armed" in created["warning"]  # no --wait: no SSH contact yet
    [call] = account.state.calls_of("CreateOnDemandPod")
    assert call["input"]["name"].startswith("cli-rph-") and call["input"]["terminateAfter"]


def test_warm_lists_running_pods_of_ours_and_run_pod_refuses_one_that_cannot_take_the_job(
    account: StandinServer, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, _ = rph(capsys, "pods", "warm", "--json")
    warm = {w["pod"]["id"]: w for w in json.loads(out)}
    # The late one is stopped by the listing; theirs is not ours; SSH unknown here, so busy is unknown.
    assert code == 0 and sorted(warm) == ["guarded", "unarmed"] and warm["guarded"]["busy"] is None
    code, out, _ = rph(capsys, "pods", "warm")
    assert code == 0 and "idle stop in -" in out and "train" in out

    job = tmp_path / "job.toml"
    job.write_text('name = "it"\n[command]\nargv = ["true"]\n[resources]\ngpu_count = 2\n')
    code, out, err = rph(capsys, "run", str(job), "--pod", "theirs")
    assert code != 0 and "runpod-hybrid did not make it" in err and out == ""
    code, out, _ = rph(capsys, "plan", str(job), "--pod", "guarded")
    assert (
        code == 1
        and "REFUSED: pod guarded cannot run this job: it has 1 GPU(s) and the job asks for 2" in out
    )
    code, out, _ = rph(capsys, "plan", str(job), "--pod", "guarded", "--json")
    assert "has 1 GPU(s) and the job asks for 2" in json.loads(out)["refused"]
    assert account.state.calls_of("CreateOnDemandPod") == []
