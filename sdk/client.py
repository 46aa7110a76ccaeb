"""The facade users import: ``RunPod`` is built once; resources are attributes built on first use.

from runpod_hybrid.client import RunPod
rp = RunPod()                       # key from RUNPOD_API_KEY or ~/.runpod/config.toml
for gpu in rp.gpus.list(gpu_count=1): ...
pod = rp.pods.create(PodSpec(gpu_types=("NVIDIA GeForce RTX 4090",))).pod
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from .config import Config, load_config
from .graphql import GRAPHQL_URL

if TYPE_CHECKING:
    from ._http import HttpTransport
    from .gpus import Gpus
    from .podapi import PodApi
    from .pods import Pods


class RunPod:
    """One account's RunPod resources. Nothing touches the network until a resource is used."""

    def __init__(
        self,
        api_key: str | None = None,
        *,
        profile: str | None = None,
        config: Config | None = None,
        graphql_url: str = GRAPHQL_URL,
    ) -> None:
        self.config = config or load_config(api_key, profile=profile)
        self._graphql_url = graphql_url

    @cached_property
    def transport(self) -> HttpTransport:
        from ._http import HttpTransport

        return HttpTransport(self.config.require_key())

    @cached_property
    def pod_api(self) -> PodApi:
        from .graphql import GraphQLClient
        from .podapi import GraphQLPodApi

        return GraphQLPodApi(GraphQLClient(self.transport, self._graphql_url))

    @cached_property
    def pods(self) -> Pods:
        from .pods import Pods
        from .sshkeys import ensure_keypair, key_path

        path = key_path(self.config.settings.ssh_key_path)
        return Pods(self.pod_api, self.config.settings, public_key=lambda: ensure_keypair(path))

    @property
    def gpus(self) -> Gpus:
        return self.pods.gpus

    def close(self) -> None:
        if "transport" in self.__dict__:
            self.transport.close()
