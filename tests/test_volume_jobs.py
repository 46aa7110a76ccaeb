"""A pod job with a network volume keeps its checkpoints on the volume: submitted again, on a new pod placed in
the volume's data centre, it continues from them. Against both API stand-ins and a real sshd, whose
/workspace plays the network volume every pod of the data centre mounts."""

from __future__ import annotations

import getpass
from pathlib import Path

import pytest
from test_jobs import pod_jobs, sshd  # noqa: F401 - sshd is a fixture

from runpod_hybrid import RunPod
from runpod_hybrid.config import load_config
from runpod_hybrid.jobs import JobSpec

from conftest import SENTINEL_KEY
from rest_standin import RestStandinServer
from runpod_standin import StandinServer
from sshd_pod import SshdPod

TRAIN = """step=$(cat "$RPH_CHECKPOINT_DIR/step" 2>/dev/null || echo 0)
step=$((step + 1)); echo "$step" > "$RPH_CHECKPOINT_DIR/step"
mkdir -p out && echo "step $step" > out/result.txt
"""


@pytest.mark.skipif(getpass.getuser() != "root", reason="RunPod pods are entered as root")
def test_a_job_run_again_on_a_new_pod_continues_from_its_checkpoints_on_the_volume(
    standin: StandinServer,
    rest_standin: RestStandinServer,
    sshd: SshdPod,  # noqa: F811 - the fixture
    isolated_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    standin.state.new_pod_runtime = sshd.pod_runtime()
    settings = isolated_home / "settings.toml"
    settings.write_text(f'ssh_key_path = "{sshd.client_key}"\n')
    config = load_config(SENTINEL_KEY, env={"RPH_CONFIG": str(settings)}, home=isolated_home)
    rp = RunPod(config=config, graphql_url=standin.url, rest_url=rest_standin.url)
    volume = rp.volumes.create("ckpt", size_gb=10, data_center_id="US-KS-2")
    jobs = pod_jobs(rp, rp.pods, str(sshd.workspace), 0.2)
    work = tmp_path / "project"
    work.mkdir()
    (work / "train.sh").write_text(TRAIN)
    monkeypatch.chdir(tmp_path)

    def run(**options: str) -> str:
        job = JobSpec.for_command(
            ["sh", "train.sh"],
            workdir=str(work),
            outputs=("out",),
            on_finish="terminate",
            gpu_types=("NVIDIA RTX A4000",),
            name="train",
            **options,
        )
        [result] = jobs.run(job)
        return result.read_text().strip()

    assert run(network_volume_id=volume.id) == "step 1"
    assert run(network_volume_id=volume.id) == "step 2"  # a new job id, on a new pod: continued
    assert run() == "step 1"  # without the volume, each job's checkpoints are its own
    creates = [c["input"] for c in standin.state.calls_of("CreateOnDemandPod")]
    assert [(c.get("networkVolumeId"), c.get("dataCenterId")) for c in creates] == [
        (volume.id, "US-KS-2"),
        (volume.id, "US-KS-2"),
        (None, None),
    ]
    assert len({h.record.pod_id for h in jobs.list()}) == 3
