"""Endpoint management, replayed from cassettes/endpoints/ (recorded against the stand-ins), on GraphQL and on
REST v2."""

from __future__ import annotations

import pytest

from runpod_hybrid.errors import NotFoundError
from runpod_hybrid.serverless import Endpoints

from conftest import ApiTarget, FakeTime


def endpoints(target: ApiTarget, fake_time: FakeTime) -> Endpoints:
    return Endpoints(target.pod_api(fake_time))


@pytest.mark.vcr
@pytest.mark.both_control_planes
def test_deploy_list_get_delete(runpod_api: ApiTarget, fake_time: FakeTime) -> None:
    api = endpoints(runpod_api, fake_time)
    deployed = api.deploy(
        "embedder",
        image="me/worker:1",
        gpu_pools=["AMPERE_16", "ADA_24"],
        workers_max=3,
        execution_timeout_s=120,
        env={"RPH_TASKS": "my_tasks", "HF_TOKEN": "hf_secret"},
    )
    assert deployed.gpu_pools == ("AMPERE_16", "ADA_24") and deployed.workers_max == 3
    assert deployed.execution_timeout_s == 120 and deployed.template_id
    assert [e.name for e in api.list()] == ["embedder"]
    assert api.get("embedder").id == deployed.id
    api.delete(deployed.id)
    assert api.list() == []
    with pytest.raises(NotFoundError, match="rph endpoint list"):
        api.get(deployed.id)
    want_env = {"RPH_TASKS": "my_tasks", "HF_TOKEN": "hf_secret"}
    if runpod_api.backend == "rest":
        [template] = runpod_api.sent_calls("POST", "/templates")
        assert template["serverless"] is True and template["image"] == "me/worker:1"
        assert template["env"] == want_env
        [endpoint] = runpod_api.sent_calls("POST", "/serverless")
        assert endpoint["timeout"] == 120_000 and endpoint["gpu"]["pools"] == ["AMPERE_16", "ADA_24"]
        deletes = [r.path_url.split("/")[2] for r in runpod_api.sent if r.method == "DELETE"]
        assert deletes == ["serverless", "templates"]
        return
    [template] = [b["variables"]["input"] for b in runpod_api.sent_bodies("SaveTemplate")]
    assert template["isServerless"] is True and template["imageName"] == "me/worker:1"
    assert {e["key"]: e["value"] for e in template["env"]} == want_env
    bodies = runpod_api.sent_bodies()
    order = [b["operationName"] for b in bodies if b["operationName"].startswith("Delete")]
    assert order == ["DeleteEndpoint", "DeleteTemplate"]


def test_bad_deploy_arguments_are_refused_before_any_call() -> None:
    api = Endpoints(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="GPU pools"):
        api.deploy("x", image="img", gpu_pools=["RTX_4090"], workers_max=1)
    with pytest.raises(ValueError, match="workers_max"):
        api.deploy("x", image="img", gpu_pools=["AMPERE_16"], workers_max=0)
    with pytest.raises(ValueError, match="execution_timeout_s"):
        api.deploy("x", image="img", gpu_pools=["AMPERE_16"], workers_max=1, execution_timeout_s=1)
