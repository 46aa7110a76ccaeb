"""The facade: :class:`RunPod`, one account's resources as attributes. Wiring only: every resource is built
on first use from the narrow collaborators it needs, and nothing touches the network until one is used."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .config import Config, load_config
from .errors import ConfigError

if TYPE_CHECKING:
    from ._http import HttpTransport
    from .controlplane import ControlPlane, SshEndpoint
    from .jobs import Jobs, JobSpec, JobStore, PodOffer
    from .pods import Gpus, Pods, Volumes
    from .remote import SshRunner
    from .serverless import BatchSummary, Endpoint, Endpoints, ProgressCallback

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def api_url(url: str) -> str:
    """Accept an API URL only where the key may safely go: HTTPS, or plain HTTP to this machine (a proxy
    or a test stand-in)."""
    parts = urlsplit(url)
    if parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in _LOOPBACK):
        return url
    raise ConfigError(f"Refusing API URL {url!r}: the API key would travel unencrypted. Use https://.")


class RunPod:
    """One RunPod account, and this machine (the local backend).

    >>> from runpod_hybrid import RunPod, JobSpec
    >>> rp = RunPod()                      # key from RUNPOD_API_KEY or ~/.runpod/config.toml, or none
    >>> rp.jobs.plan(JobSpec.for_command("python3 train.py", outputs=("out",)))   # where, why, cost
    >>> rp.jobs.run(JobSpec.for_command("python3 train.py", outputs=("out",)))    # the fetched files
    >>> rp.jobs.map(embed, texts)          # a @task over many inputs: one result each
    >>> rp.gpus.list(gpu_count=1)          # GPU types with live stock and price
    >>> rp.pods.create(PodSpec(gpu_types=("NVIDIA GeForce RTX 4090",)))
    >>> rp.remote(pod_id).exec(["nvidia-smi"])
    >>> rp.endpoint("my-endpoint").map(embed, texts)

    Resources: :attr:`jobs`, :attr:`pods`, :attr:`gpus`, :attr:`volumes` (network volumes), :attr:`endpoints`
    (serverless endpoint management),
    :meth:`endpoint` (one endpoint's job API) and :meth:`remote` (commands and files on a pod).
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        profile: str | None = None,
        config: Config | None = None,
        graphql_url: str | None = None,
        rest_url: str | None = None,
    ) -> None:
        """``api_key`` overrides ``RUNPOD_API_KEY`` and ``~/.runpod/config.toml`` (``profile`` picks the table
        there); ``config`` is a ready :class:`Config`; ``graphql_url`` and ``rest_url`` point the control plane
        elsewhere (``RPH_GRAPHQL_URL``, ``RPH_REST_URL``: a proxy or a test stand-in)."""
        from .controlplane import GRAPHQL_URL, REST_URL

        self.config = config or load_config(api_key, profile=profile)
        self._graphql_url = api_url(graphql_url or os.environ.get("RPH_GRAPHQL_URL") or GRAPHQL_URL)
        self._rest_url = api_url(rest_url or os.environ.get("RPH_REST_URL") or REST_URL)

    @cached_property
    def transport(self) -> HttpTransport:
        """The HTTP transport every control-plane call goes through (it asks for the key when first used)."""
        from ._http import HttpTransport

        return HttpTransport(self.config.require_key)

    @cached_property
    def pod_api(self) -> ControlPlane:
        """The control-plane seam: GraphQL or REST v2 per operation (the ``control_plane`` setting);
        ``pod_api.routes()`` says which API each operation uses now."""
        from .controlplane import (
            ControlPlane,
            GoneMemory,
            GraphQLClient,
            GraphQLPodApi,
            RestClient,
            RestPodApi,
        )

        return ControlPlane(
            GraphQLPodApi(GraphQLClient(self.transport, self._graphql_url)),
            RestPodApi(RestClient(self.transport, self._rest_url)),
            mode=self.config.settings.control_plane,
            memory=GoneMemory(self.config.paths.state_dir / "control-plane.json"),
        )

    @cached_property
    def pods(self) -> Pods:
        """Create (with safe defaults), list, start, stop, terminate and wait for pods."""
        from .pods import Pods, ensure_keypair, public_key

        path = self.ssh_key_path
        return Pods(
            self.pod_api,
            self.config.settings,
            public_key=lambda: ensure_keypair(path),
            existing_public_key=lambda: public_key(path),
            open_runner=self._ssh_runner,
        )

    @property
    def gpus(self) -> Gpus:
        """GPU types with live stock and prices."""
        return self.pods.gpus

    @cached_property
    def volumes(self) -> Volumes:
        """List, create and delete network volumes (pods using one are placed in its data centre)."""
        from .pods import Volumes

        return Volumes(self.pod_api)

    @cached_property
    def endpoints(self) -> Endpoints:
        """Deploy, list, get and delete serverless endpoints."""
        from .serverless import Endpoints

        return Endpoints(self.pod_api)

    @property
    def ssh_key_path(self) -> Path:
        """Our SSH key for pods (generated on first use)."""
        from .pods import key_path

        return key_path(self.config.settings.ssh_key_path)

    @property
    def known_hosts(self) -> Path:
        """Our own known_hosts: host keys pinned per pod, apart from the user's ~/.ssh/known_hosts."""
        return self.config.paths.state_dir / "known_hosts"

    def remote(self, pod_id: str) -> SshRunner:
        """Commands and files on a running pod, over its direct SSH endpoint (the first SSH contact with a pod
        of ours arms its watchdog)."""
        return self._ssh_runner(pod_id, self.pods.ssh_endpoint(pod_id))

    def _ssh_runner(self, pod_id: str, endpoint: SshEndpoint) -> SshRunner:
        from .pods import ensure_keypair
        from .remote import SshRunner, SshTarget

        ensure_keypair(self.ssh_key_path)
        target = SshTarget(endpoint.host, endpoint.port, pod_id, endpoint.user)
        return SshRunner(target, self.ssh_key_path, self.known_hosts)

    def forget_host_key(self, pod_id: str) -> bool:
        """Drop a pod's pinned SSH host key (after a legitimate restart made a new one)."""
        from .remote import forget_host_key

        return forget_host_key(self.known_hosts, pod_id)

    @cached_property
    def job_store(self) -> JobStore:
        from .jobs import JobStore

        return JobStore(self.config.paths.state_dir / "jobs.db")

    def endpoint(self, endpoint: str, *, base_url: str | None = None) -> Endpoint:
        """A serverless endpoint's job API, by id or by its name in the settings' [endpoints] table.
        ``base_url`` (or ``RPH_SERVERLESS_URL``) points at a local endpoint instead of RunPod."""
        from ._http import HttpTransport
        from .serverless import SERVERLESS_URL, Endpoint

        endpoint_id = self.config.settings.endpoints.get(endpoint, endpoint)
        url = api_url(base_url or os.environ.get("RPH_SERVERLESS_URL") or SERVERLESS_URL)
        local = url != SERVERLESS_URL and urlsplit(url).hostname in _LOOPBACK
        # A local endpoint needs no key; it is sent when there is one (serve-local may ask for it).
        transport = HttpTransport(self.config.api_key) if local else self.transport
        return Endpoint(endpoint_id, transport, base_url=url, ledger=self.job_store)

    def resume_batch(self, batch_id: str, *, on_progress: ProgressCallback | None = None) -> Iterator[Any]:
        """Finish a batch after a crash, on the endpoint it ran on: jobs already submitted are re-attached,
        never submitted again."""
        from .errors import NotFoundError

        batch = self.job_store.get_batch(batch_id)
        if batch is None:
            raise NotFoundError(f"No batch {batch_id!r} in the local job store.")
        endpoint = self.endpoint(batch.endpoint_id, base_url=batch.base_url)
        return endpoint.resume_batch(batch_id, on_progress=on_progress)

    def batch_summary(self, batch_id: str) -> BatchSummary:
        """What a batch has done, from the local job store (no API call)."""
        from .serverless import summarize

        return summarize(self.job_store, batch_id)

    @cached_property
    def jobs(self) -> Jobs:
        """Plan, submit, run, map and find jobs, on a pod, on serverless, or here."""
        from .jobs import Jobs, LocalCommandBackend, PodCommandBackend, TaskBackend, local_pool

        tasks_here = TaskBackend(local_pool)
        return Jobs(
            self.job_store,
            self.config.settings,
            has_api_key=self.config.api_key is not None,
            backends={
                ("command", "local"): LocalCommandBackend(self.config.paths.state_dir / "local"),
                ("command", "pod"): PodCommandBackend(self.pods, self.remote),
                ("task", "local"): tasks_here,
                ("task", "serverless"): TaskBackend(self._task_endpoint),
            },
            pod_offers=self._pod_offers,
            warm_pods=lambda job: self.pods.warm(job.pod),
        )

    @contextlib.contextmanager
    def _task_endpoint(self, job: JobSpec) -> Iterator[Endpoint]:
        name = job.endpoint or job.task or ""
        yield self.endpoint(self.config.settings.endpoints.get(name, name))

    def _pod_offers(self, job: JobSpec) -> list[PodOffer]:
        from .jobs import PodOffer
        from .pods import PodSpec, preferences_for

        prefs = preferences_for(
            PodSpec(
                gpu_types=job.gpu_types,
                min_vram_gb=job.min_vram_gb or None,
                cloud_type=job.cloud_type,
                spot=job.spot,
            ),
            self.config.settings,
        )
        return [
            PodOffer(c.gpu_type_id, c.usd_per_gpu_hour)
            for c in self.gpus.candidates(prefs, gpu_count=job.gpu_count)
        ]

    def close(self) -> None:
        """Release the HTTP connections (nothing else needs closing)."""
        if "transport" in self.__dict__:
            self.transport.close()
