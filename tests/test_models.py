"""Parsing RunPod's real response bodies (tests/data/runpod-samples) into our types."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runpod_hybrid.controlplane import GpuType, NameTag, Pod, PodTelemetry

SAMPLES = Path(__file__).parent / "data" / "runpod-samples"


def sample(name: str) -> Any:
    return json.loads((SAMPLES / name).read_text())


def test_pods_with_runtime_and_null_ports() -> None:
    raw = sample("graphql-myself-pods-runtime.docs-example.json")["data"]["myself"]["pods"]
    first, second = (Pod.from_api(p) for p in raw)
    assert first.runtime is not None and first.runtime.uptime_s == 3931
    assert first.runtime.ports is not None and first.runtime.ports[0].public_port == 60141
    assert first.ssh is None  # only an http port, and not public
    assert second.runtime is not None and second.runtime.ports is None
    assert second.runtime.gpus[0].util_percent == 100
    assert second.status == "UNKNOWN"  # the docs example selected no desiredStatus


def test_gpu_types_with_null_lowest_price_fields() -> None:
    raw = sample("graphql-gpuTypes-lowestPrice.recorded-2026-08-20.json")["gpuTypes"]
    types = {g.id: g for g in (GpuType.from_api(r) for r in raw)}
    mi300 = types["AMD Instinct MI300X OAM"]
    offer = mi300.offers[0]
    assert not offer.in_stock and offer.usd_per_gpu_hour is None and offer.stock_status is None
    rtx = types["NVIDIA GeForce RTX 4090"]
    assert rtx.offers[0].in_stock and rtx.offers[0].usd_per_gpu_hour == 0.74
    assert types["NVIDIA RTX PRO 4500 Blackwell"].display_name == "RTX PRO 4500"


def test_gpu_type_full_docs_example() -> None:
    [raw] = sample("graphql-gpuTypes-lowestPrice-full.docs-example.json")["data"]["gpuTypes"]
    gpu = GpuType.from_api(raw)
    assert gpu.secure_usd_per_hour == 0.24 and gpu.community_usd_per_hour == 0.17
    assert gpu.secure_spot_usd_per_hour == 0.16 and gpu.community_spot_usd_per_hour is None
    offer = gpu.offers[0]
    assert offer.stock_status == "Low" and offer.max_unreserved_gpus == 7
    assert offer.available_gpu_counts == (1, 2, 3, 4, 5, 6, 7)
    assert offer.min_bid_usd_per_gpu_hour == 0.16


def test_created_pod_with_env_strings_and_short_display_name() -> None:
    created = Pod.from_api(
        sample("graphql-podFindAndDeployOnDemand.docs-example.json")["data"]["podFindAndDeployOnDemand"]
    )
    assert created.id == "50qynxzilsxoey" and created.runtime is None
    assert not hasattr(created, "env")  # env is never kept: it can hold user secrets
    recorded = Pod.from_api(sample("graphql-pod.recorded-2026-08-20.json"))
    assert recorded.gpu_display_name == "RTX PRO 4500" and recorded.gpu_type_id is None
    assert recorded.usd_per_hour == 0.72 and recorded.status == "RUNNING"


def test_telemetry_prefers_latest_telemetry_and_computes_cost() -> None:
    raw = {
        "id": "p1",
        "desiredStatus": "RUNNING",
        "costPerHr": 0.72,
        "runtime": {"uptimeInSeconds": 7200, "gpus": [{"id": "g", "gpuUtilPercent": 5}]},
        "latestTelemetry": {
            "cpuUtilization": 12.5,
            "memoryUtilization": 40.0,
            "time": "2026-11-26T10:00:00Z",
            "individualGpuMetrics": [
                {"id": "GPU-0", "percentUtilization": 97.0, "temperatureCelcius": 71.0, "powerWatts": 650.5}
            ],
        },
    }
    t = PodTelemetry.from_api(raw)
    assert t.cost_since_start_usd == 1.44
    assert t.gpus[0].util_percent == 97.0 and t.gpus[0].temperature_c == 71.0 and t.gpus[0].power_w == 650.5
    assert t.cpu_percent == 12.5
    no_telemetry = PodTelemetry.from_api({**raw, "latestTelemetry": None})
    assert no_telemetry.gpus[0].util_percent == 5 and no_telemetry.cpu_percent is None


def test_name_tag_round_trip() -> None:
    deadline = datetime(2026, 11, 27, 12, 0, 5, tzinfo=UTC)
    for tag in (
        NameTag("0a1b2c3d"),
        NameTag("0a1b2c3d", deadline),
        NameTag("0a1b2c3d", deadline, watchdog_armed=True),
    ):
        assert NameTag.split(tag.name("my-train-rph-job")) == ("my-train-rph-job", tag)
    assert (
        NameTag("0a1b2c3d", deadline, watchdog_armed=True).name("t") == "t-rph-0a1b2c3d-20261127T120005Z-wd"
    )
    # A deadline between seconds is kept as the next second: never earlier than asked.
    assert NameTag("0a1b2c3d", deadline.replace(microsecond=1)).name("t").endswith("T120006Z")
    assert NameTag.split("my-own-pod") is None
    assert NameTag.split("x-rph-XYZ") is None
    assert NameTag.split("x-rph-0a1b2c3d-tomorrow") is None
    assert Pod.from_api({"name": "t-rph-0a1b2c3d-20261127T120005Z"}).client_token == "0a1b2c3d"
