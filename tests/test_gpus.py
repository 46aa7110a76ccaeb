"""GPU listing (replayed from cassettes/gpus/, on GraphQL and on REST v2) and the pure candidate choice."""

from __future__ import annotations

import pytest

from runpod_hybrid.controlplane import GpuOffer, GpuType
from runpod_hybrid.errors import ConfigError
from runpod_hybrid.pods import GpuPreferences, Gpus, choose, resolve_gpu_id

from conftest import ApiTarget, FakeTime


def gpu(
    gpu_id: str,
    memory_gb: int,
    secure: float | None,
    community: float | None,
    stock: str | None = "High",
    counts: tuple[int, ...] = (1, 2),
    max_count: int = 8,
) -> GpuType:
    def offer(cloud: str, price: float | None) -> GpuOffer:
        return GpuOffer(
            cloud,
            1,
            price,
            price / 2 if price else None,
            stock if price else None,  # type: ignore[arg-type]
            len(counts),
            counts if price else (),
        )

    return GpuType(
        gpu_id,
        gpu_id.rsplit(maxsplit=1)[-1],
        memory_gb,
        max_count,
        secure,
        community,
        None,
        None,
        (offer("SECURE", secure), offer("COMMUNITY", community)),
    )


TYPES = [
    gpu("NVIDIA A40", 48, 0.40, 0.35),
    gpu("NVIDIA GeForce RTX 4090", 24, 0.69, 0.44),
    gpu("NVIDIA RTX A4000", 16, 0.24, None),
    gpu("NVIDIA H100 NVL", 94, None, None),
    gpu("NVIDIA L4", 24, 0.43, 0.30, counts=(1,)),
]


def test_explicit_ids_keep_order_then_fall_back_by_cloud() -> None:
    prefs = GpuPreferences(
        gpu_type_ids=("NVIDIA GeForce RTX 4090", "NVIDIA A40", "NVIDIA H100 NVL"),
        cloud_types=("SECURE", "COMMUNITY"),
    )
    got = [(c.gpu_type_id, c.cloud_type, c.usd_per_gpu_hour) for c in choose(TYPES, prefs, 1)]
    assert got == [
        ("NVIDIA GeForce RTX 4090", "SECURE", 0.69),
        ("NVIDIA A40", "SECURE", 0.40),
        ("NVIDIA GeForce RTX 4090", "COMMUNITY", 0.44),
        ("NVIDIA A40", "COMMUNITY", 0.35),
    ]  # the H100 is out of stock everywhere: skipped


def test_filters_sort_by_price_and_respect_counts() -> None:
    prefs = GpuPreferences(min_vram_gb=24, max_usd_per_gpu_hour=0.5, cloud_types=("COMMUNITY",))
    assert [c.gpu_type_id for c in choose(TYPES, prefs, 1)] == [
        "NVIDIA L4",
        "NVIDIA A40",
        "NVIDIA GeForce RTX 4090",
    ]
    # The L4 offers only single-GPU pods.
    assert "NVIDIA L4" not in [c.gpu_type_id for c in choose(TYPES, prefs, 2)]
    two = choose(TYPES, prefs, 2)
    assert two[0].usd_per_hour == round(two[0].usd_per_gpu_hour * 2, 4)


def test_spot_uses_the_minimum_bid() -> None:
    prefs = GpuPreferences(gpu_type_ids=("NVIDIA A40",), spot=True)
    [candidate] = choose(TYPES, prefs, 1)
    assert candidate.usd_per_gpu_hour == 0.20 == candidate.min_bid_usd_per_gpu_hour


def test_display_names_resolve_and_unknown_ids_suggest() -> None:
    assert resolve_gpu_id("a40", TYPES).id == "NVIDIA A40"
    with pytest.raises(ConfigError) as info:
        resolve_gpu_id("NVIDIA RTX 4090", TYPES)
    assert "Did you mean" in str(info.value) and "NVIDIA GeForce RTX 4090" in str(info.value)


def test_gpu_count_above_the_type_max_is_refused() -> None:
    with pytest.raises(ConfigError, match="at most 8 GPUs"):
        choose(TYPES, GpuPreferences(gpu_type_ids=("NVIDIA A40",)), 9)


@pytest.mark.vcr
@pytest.mark.both_control_planes
def test_list_live_stock_and_prices(runpod_api: ApiTarget, fake_time: FakeTime) -> None:
    types = Gpus(runpod_api.pod_api(fake_time)).list(gpu_count=1)
    ids = [g.id for g in types]
    assert "NVIDIA GeForce RTX 4090" in ids
    # In-stock cards come first, cheapest first; cards out of stock everywhere come last.
    h100 = next(g for g in types if g.id == "NVIDIA H100 NVL")
    assert not any(o.in_stock for o in h100.offers)
    assert ids.index("NVIDIA H100 NVL") > ids.index("NVIDIA GeForce RTX 4090")
    rtx = next(g for g in types if g.id == "NVIDIA GeForce RTX 4090")
    secure = rtx.offer("SECURE")
    assert secure is not None and secure.in_stock and secure.usd_per_gpu_hour == rtx.secure_usd_per_hour
    # GraphQL gives minimum bids; REST v2 has no spot pods and says so.
    assert (secure.min_bid_usd_per_gpu_hour is None) == (runpod_api.backend == "rest")
    assert any("spot" in m for m in rtx.missing) == (runpod_api.backend == "rest")


@pytest.mark.vcr
@pytest.mark.both_control_planes
def test_list_for_eight_gpus_and_min_vram(runpod_api: ApiTarget, fake_time: FakeTime) -> None:
    types = Gpus(runpod_api.pod_api(fake_time)).list(gpu_count=8, min_vram_gb=32, cloud_type="SECURE")
    assert types and all(g.memory_gb >= 32 for g in types)
    a4000 = [g for g in types if g.id == "NVIDIA RTX A4000"]
    assert a4000 == []  # 16 GB: filtered out
