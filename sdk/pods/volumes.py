"""Network volumes: storage that outlives every pod, in one data centre, and placing pods beside them.

RunPod facts: a network volume is attached at create only, on Secure Cloud only, to a pod in the volume's
own data centre (REST v2 ``mounts.network``; GraphQL ``networkVolumeId``); it keeps billing until deleted.
"""

from __future__ import annotations

import builtins
from dataclasses import replace
from typing import TYPE_CHECKING

from runpod_hybrid.controlplane import NetworkVolume, PodApi, VolumeRequest, describe_volumes, find_volume
from runpod_hybrid.errors import ConfigError

if TYPE_CHECKING:
    from .lifecycle import PodSpec

MIN_VOLUME_GB = 10
MAX_VOLUME_GB = 4096


def place_on_volume(spec: PodSpec, api: PodApi) -> PodSpec:
    """``spec`` placed where its network volume is: that data centre, Secure Cloud, no fallback elsewhere.
    Refused before any create when the spec asks for another data centre or for Community Cloud, naming
    where the account's volumes are."""
    if not spec.network_volume_id:
        return spec
    volumes = api.list_network_volumes()
    volume = find_volume(volumes, spec.network_volume_id)
    if spec.data_center_id and spec.data_center_id != volume.data_center_id:
        raise ConfigError(
            f"Network volume {volume.id} is in {volume.data_center_id}, but the pod was asked for "
            f"{spec.data_center_id}: a pod mounts a volume only in the volume's data centre. Drop --data-center "
            f"or pick a volume there. {describe_volumes(volumes)}"
        )
    if (spec.cloud_type or "SECURE").upper() == "COMMUNITY":
        raise ConfigError(
            f"Network volume {volume.id} can be attached on Secure Cloud only; drop --cloud COMMUNITY."
        )
    return replace(
        spec,
        network_volume_id=volume.id,
        data_center_id=volume.data_center_id,
        cloud_type="SECURE",
        fallback_cloud_types=(),
    )


def where_placed(spec: PodSpec, api: PodApi) -> str:
    """For a no-capacity message: the data centre the pod was held to, and why."""
    if not spec.data_center_id:
        return ""
    if not spec.network_volume_id:
        return f" in data centre {spec.data_center_id}"
    return (
        f" in {spec.data_center_id}, where network volume {spec.network_volume_id} is (a pod mounts a volume only "
        f"in its data centre). {describe_volumes(api.list_network_volumes())} Try other GPU types, or a volume "
        "in a data centre that has them"
    )


class Volumes:
    """The account's network volumes (served by REST v2 whatever ``control_plane`` says: see the README)."""

    def __init__(self, api: PodApi) -> None:
        self._api = api

    def list(self) -> builtins.list[NetworkVolume]:
        """Every network volume of the account, with its data centre and size."""
        return self._api.list_network_volumes()

    def get(self, volume: str) -> NetworkVolume:
        """One volume by id or name."""
        return find_volume(self.list(), volume)

    def create(self, name: str, *, size_gb: int, data_center_id: str) -> NetworkVolume:
        """Create a volume (billed per GB-month until deleted) in ``data_center_id``; pods that use it run there."""
        if not MIN_VOLUME_GB <= size_gb <= MAX_VOLUME_GB:
            raise ValueError(f"size_gb must be between {MIN_VOLUME_GB} and {MAX_VOLUME_GB} (RunPod's limits)")
        if not name or not data_center_id:
            raise ValueError("a network volume needs a name and a data centre id (e.g. EU-RO-1)")
        return self._api.create_network_volume(VolumeRequest(name, size_gb, data_center_id))

    def delete(self, volume: str) -> NetworkVolume:
        """Delete a volume and its data for good; refused while a pod of the account still uses it."""
        found = self.get(volume)
        users = [p.id for p in self._api.list_pods() if p.network_volume_id == found.id]
        if users:
            raise ConfigError(
                f"Network volume {found.id} is attached to pod(s) {', '.join(users)}; terminate them first "
                "(`rph pods terminate`), then delete the volume."
            )
        self._api.delete_network_volume(found.id)
        return found
