"""The facade users import: ``RunPod`` is built once; resources are attributes built on first use.

from runpod_hybrid.client import RunPod
rp = RunPod()                       # key from RUNPOD_API_KEY or ~/.runpod/config.toml
for gpu in rp.gpus.list(gpu_count=1): ...
pod = rp.pods.create(PodSpec(gpu_types=("NVIDIA GeForce RTX 4090",))).pod
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .config import Config, load_config
from .errors import ConfigError
from .graphql import GRAPHQL_URL

if TYPE_CHECKING:
    from ._http import HttpTransport
    from .endpoints import Endpoints
    from .gpus import Gpus
    from .graphql import GraphQLClient
    from .jobs import JobHandle, Jobs
    from .jobspec import JobSpec
    from .jobstore import JobStore
    from .podapi import PodApi
    from .pods import Pods
    from .remote import SshRunner
    from .router import Plan
    from .serverless import Endpoint


def api_url(url: str) -> str:
    """Accept an API URL only where the key may safely go: HTTPS, or plain HTTP to this machine (a proxy
    or a test stand-in)."""
    parts = urlsplit(url)
    if parts.scheme == "https" or (
        parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1")
    ):
        return url
    raise ConfigError(f"Refusing API URL {url!r}: the API key would travel unencrypted. Use https://.")


class RunPod:
    """One account's RunPod resources. Nothing touches the network until a resource is used."""

    def __init__(
        self,
        api_key: str | None = None,
        *,
        profile: str | None = None,
        config: Config | None = None,
        graphql_url: str | None = None,
    ) -> None:
        self.config = config or load_config(api_key, profile=profile)
        self._graphql_url = api_url(graphql_url or os.environ.get("RPH_GRAPHQL_URL") or GRAPHQL_URL)

    @cached_property
    def transport(self) -> HttpTransport:
        from ._http import HttpTransport

        return HttpTransport(self.config.require_key())

    @cached_property
    def graphql(self) -> GraphQLClient:
        from .graphql import GraphQLClient

        return GraphQLClient(self.transport, self._graphql_url)

    @cached_property
    def pod_api(self) -> PodApi:
        from .podapi import GraphQLPodApi

        return GraphQLPodApi(self.graphql)

    @cached_property
    def endpoints(self) -> Endpoints:
        """Deploy, list, get and delete serverless endpoints."""
        from .endpoints import Endpoints

        return Endpoints(self.graphql)

    @cached_property
    def pods(self) -> Pods:
        from .pods import Pods
        from .sshkeys import ensure_keypair, key_path

        path = key_path(self.config.settings.ssh_key_path)
        return Pods(self.pod_api, self.config.settings, public_key=lambda: ensure_keypair(path))

    def ssh_key_path(self) -> Path:
        from .sshkeys import key_path

        return key_path(self.config.settings.ssh_key_path)

    @property
    def known_hosts(self) -> Path:
        """Our own known_hosts: host keys pinned per pod, apart from the user's ~/.ssh/known_hosts."""
        return self.config.paths.state_dir / "known_hosts"

    def remote(self, pod_id: str) -> SshRunner:
        """Commands and files on a running pod, over its direct SSH endpoint."""
        from .remote import SshRunner, SshTarget
        from .sshkeys import ensure_keypair

        endpoint = self.pods.ssh_endpoint(pod_id)
        ensure_keypair(self.ssh_key_path())
        target = SshTarget(endpoint.host, endpoint.port, pod_id, endpoint.user)
        return SshRunner(target, self.ssh_key_path(), self.known_hosts)

    @cached_property
    def job_store(self) -> JobStore:
        from .jobstore import JobStore

        return JobStore(self.config.paths.state_dir / "jobs.db")

    def endpoint(self, endpoint: str, *, base_url: str | None = None) -> Endpoint:
        """A serverless endpoint by id or by its name in the settings' [endpoints] table. ``base_url`` (or
        ``RPH_SERVERLESS_URL``) points at a local endpoint instead of RunPod; no key is needed there."""
        from ._http import HttpTransport
        from .serverless import SERVERLESS_URL, Endpoint

        endpoint_id = self.config.settings.endpoints.get(endpoint, endpoint)
        url = api_url(base_url or os.environ.get("RPH_SERVERLESS_URL") or SERVERLESS_URL)
        local = url != SERVERLESS_URL and urlsplit(url).hostname in ("127.0.0.1", "localhost", "::1")
        transport = HttpTransport(self.config.api_key) if local else self.transport
        return Endpoint(endpoint_id, transport, base_url=url, store=self.job_store)

    @property
    def gpus(self) -> Gpus:
        return self.pods.gpus

    def close(self) -> None:
        if "transport" in self.__dict__:
            self.transport.close()


class Hybrid(RunPod):
    """One job, two places to run it: the two-line entry points.

    from runpod_hybrid.client import Hybrid
    results = Hybrid().map(embed, texts)          # a @task over many inputs
    outputs = Hybrid().run(JobSpec.for_command(["python", "train.py"], outputs=("out",)))
    """

    @cached_property
    def jobs(self) -> Jobs:
        from .jobs import Jobs

        return Jobs(self)

    def plan(self, job: JobSpec, backend: str = "auto") -> Plan:
        return self.jobs.plan(job, backend)

    def submit(self, job: JobSpec, *, backend: str = "auto", detach: bool = True) -> JobHandle:
        return self.jobs.submit(job, backend=backend, detach=detach)[1]

    def run(self, job: JobSpec, *, backend: str = "auto") -> Any:
        """Run to the end: a task job's results, or a command job's fetched output files."""
        handle = self.jobs.submit(job, backend=backend, detach=False)[1]
        return handle.result() if job.kind == "task" else handle.fetch()

    def map(
        self,
        task: Callable[..., Any] | str,
        inputs: Iterable[Any],
        *,
        backend: str = "auto",
        module: str | None = None,
    ) -> list[Any]:
        from .jobspec import JobSpec
        from .tasks import task_name

        name = task_name(task)
        source = module or (getattr(task, "__module__", None) if not isinstance(task, str) else None)
        extra: dict[str, Any] = {}
        if source == "__main__":
            # Workers import the task's module by name: a script's tasks come from its file (guard the
            # script's own work with `if __name__ == "__main__":`, as with multiprocessing).
            import sys

            script = getattr(sys.modules["__main__"], "__file__", None)
            if script is None:
                raise ValueError(
                    "define @task functions in a module (not an interactive session) to map them"
                )
            source, extra = Path(script).stem, {"task_path": str(Path(script).resolve().parent)}
        job = JobSpec.for_task(name, list(inputs), module=source, extra=extra)
        result: list[Any] = self.run(job, backend=backend)
        return result
