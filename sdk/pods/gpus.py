"""GPU types, live stock and prices, and choosing what to try, in order."""

from __future__ import annotations

import builtins
import difflib
from collections.abc import Sequence
from dataclasses import dataclass

from runpod_hybrid.controlplane import GpuType, PodApi
from runpod_hybrid.errors import ConfigError


@dataclass(frozen=True)
class Candidate:
    """One thing a create can try: a GPU type in a cloud, with its live price per GPU-hour."""

    gpu_type_id: str
    display_name: str
    cloud_type: str
    gpu_count: int
    usd_per_gpu_hour: float
    min_bid_usd_per_gpu_hour: float | None
    stock_status: str

    @property
    def usd_per_hour(self) -> float:
        return round(self.usd_per_gpu_hour * self.gpu_count, 4)


@dataclass(frozen=True)
class GpuPreferences:
    """Explicit GPU ids in order, or a filter (min VRAM, max price); cloud types in the order to try."""

    gpu_type_ids: tuple[str, ...] = ()
    min_vram_gb: int = 0
    max_usd_per_gpu_hour: float = 0.0
    cloud_types: tuple[str, ...] = ("SECURE",)
    spot: bool = False


def resolve_gpu_id(name: str, types: Sequence[GpuType]) -> GpuType:
    """Find a GPU type by id or display name (case-insensitive); suggest the nearest names otherwise."""
    wanted = name.strip().lower()
    for gpu in types:
        if wanted in (gpu.id.lower(), gpu.display_name.lower()):
            return gpu
    names = [g.id for g in types] + [g.display_name for g in types]
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.4)
    hint = f" Did you mean: {', '.join(repr(c) for c in close)}?" if close else ""
    raise ConfigError(f"Unknown GPU type {name!r}.{hint} `rph gpus` lists every id.")


def _spot_price(gpu: GpuType, cloud: str) -> float | None:
    offer = gpu.offer(cloud)
    if offer and offer.min_bid_usd_per_gpu_hour is not None:
        return offer.min_bid_usd_per_gpu_hour
    return gpu.secure_spot_usd_per_hour if cloud == "SECURE" else gpu.community_spot_usd_per_hour


def choose(types: Sequence[GpuType], prefs: GpuPreferences, gpu_count: int) -> list[Candidate]:
    """Order what to try: every cloud type in turn, and within it the GPU types (in the given order, else by
    price), skipping what is out of stock, too small, too dear, or cannot hold ``gpu_count`` GPUs."""
    if prefs.gpu_type_ids:
        ordered = [resolve_gpu_id(name, types) for name in prefs.gpu_type_ids]
        for gpu in ordered:
            if gpu.max_gpu_count is not None and gpu_count > gpu.max_gpu_count:
                raise ConfigError(
                    f"{gpu.id} allows at most {gpu.max_gpu_count} GPUs per pod; you asked for {gpu_count}."
                )
    else:
        ordered = [g for g in types if g.memory_gb >= prefs.min_vram_gb]
    candidates: list[Candidate] = []
    for cloud in prefs.cloud_types:
        in_cloud: list[Candidate] = []
        for gpu in ordered:
            offer = gpu.offer(cloud)
            if offer is None or not offer.in_stock or offer.usd_per_gpu_hour is None:
                continue
            if offer.available_gpu_counts and gpu_count not in offer.available_gpu_counts:
                continue
            price = _spot_price(gpu, cloud) if prefs.spot else offer.usd_per_gpu_hour
            if price is None or (prefs.max_usd_per_gpu_hour and price > prefs.max_usd_per_gpu_hour):
                continue
            in_cloud.append(
                Candidate(
                    gpu.id,
                    gpu.display_name,
                    cloud,
                    gpu_count,
                    price,
                    _spot_price(gpu, cloud),
                    str(offer.stock_status),
                )
            )
        if not prefs.gpu_type_ids:
            in_cloud.sort(key=lambda c: c.usd_per_gpu_hour)
        candidates += in_cloud
    return candidates


class Gpus:
    """GPU types with live stock and prices."""

    def __init__(self, api: PodApi) -> None:
        self._api = api

    def list(
        self,
        *,
        gpu_count: int = 1,
        min_vram_gb: int = 0,
        cloud_type: str = "ALL",
        data_center_id: str | None = None,
    ) -> builtins.list[GpuType]:
        """Every GPU type (with live offers for ``gpu_count`` GPUs, anywhere or in ``data_center_id``), the
        in-stock ones first, cheapest first."""
        if gpu_count < 1:
            raise ValueError("gpu_count must be at least 1")
        clouds = ("SECURE", "COMMUNITY") if cloud_type == "ALL" else (cloud_type,)
        types = [
            g
            for g in self._api.gpu_types(gpu_count, data_center_id=data_center_id)
            if g.memory_gb >= min_vram_gb
        ]

        def best_price(gpu: GpuType) -> float:
            prices = [
                o.usd_per_gpu_hour
                for o in gpu.offers
                if o.cloud_type in clouds and o.in_stock and o.usd_per_gpu_hour is not None
            ]
            return min(prices) if prices else float("inf")

        return sorted(types, key=lambda g: (best_price(g), g.id))

    def candidates(
        self, prefs: GpuPreferences, *, gpu_count: int, data_center_id: str | None = None
    ) -> builtins.list[Candidate]:
        """What a create would try, in order, for ``gpu_count`` GPUs (in ``data_center_id`` when given): live
        offers that match ``prefs``."""
        return choose(self._api.gpu_types(gpu_count, data_center_id=data_center_id), prefs, gpu_count)
