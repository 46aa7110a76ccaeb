"""The one exception tree of runpod-hybrid, and the job states a :class:`JobError` carries.

Everything the SDK raises on purpose derives from :class:`RunPodHybridError` (caller bugs raise
``ValueError``/``TypeError``). Foreign exceptions (``requests``, ``subprocess``, JSON) are mapped where
they occur, with ``raise ... from exc``. Every message says what to do next, and none holds the API key.

::

    RunPodHybridError
    ├── ConfigError                      bad or missing configuration
    │   └── MissingApiKeyError           no key found in any of the three places
    ├── LocalPathError                   a local file or dir an operation needs is missing or unusable
    ├── BudgetExceededError              a create/submit would exceed a configured cost cap
    ├── ApiUnavailableError              the operation needs an API this process cannot use (GraphQL gone, REST lacks it)
    ├── ApiError                         RunPod answered, but not with what we asked for
    │   ├── ApiStatusError               an HTTP status we do not expect (other 4xx)
    │   │   ├── AuthError                401/403, or `myself: null`
    │   │   ├── NotFoundError            404
    │   │   ├── RateLimitError           429 (carries retry_after_s)
    │   │   └── ServerError              5xx
    │   ├── BadResponseError             a body that is not the JSON we expect
    │   ├── GraphQLError                 `errors` in a GraphQL answer (every message, code and path kept)
    │   │   └── GraphQLValidationError   HTTP 400 GRAPHQL_VALIDATION_FAILED: a bug in this SDK
    │   └── CapacityError                no GPU free for the request (any of RunPod's three shapes)
    ├── TransportError                   the request did not complete
    │   ├── ConnectionFailedError        could not connect (request_sent says if it may have arrived)
    │   └── RequestTimeoutError          connect or read timed out
    ├── PodNotReadyError                 a pod did not become usable (crash loop, exited, no public IP...)
    ├── RemoteCommandError               a command on a pod failed to run or returned non-zero
    │   ├── SshConnectionError           ssh could not reach or log in to the pod
    │   ├── HostKeyChangedError          the pod's SSH host key differs from the pinned one
    │   └── UnsafeArchiveError           a download tried to write outside its target
    └── JobError                         a job ended FAILED, TIMED_OUT or CANCELLED, or did not end in time
        └── JobExpiredError              the job's result is gone (serverless ttl passed)

Job states are one vocabulary everywhere (the job store, the SDK, the CLI's ``--json`` and MCP results):
:data:`JobState`. RunPod Serverless's own statuses map onto it (IN_QUEUE is PENDING, IN_PROGRESS is RUNNING,
COMPLETED is SUCCEEDED; FAILED, CANCELLED and TIMED_OUT keep their names).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

JobState = Literal["PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED", "TIMED_OUT"]
JOB_STATES: tuple[JobState, ...] = get_args(JobState)
TERMINAL_STATES: frozenset[JobState] = frozenset({"SUCCEEDED", "FAILED", "CANCELLED", "TIMED_OUT"})

__all__ = [
    "JOB_STATES",
    "TERMINAL_STATES",
    "ApiError",
    "ApiStatusError",
    "ApiUnavailableError",
    "AuthError",
    "BadResponseError",
    "BudgetExceededError",
    "CapacityError",
    "ConfigError",
    "ConnectionFailedError",
    "GraphQLError",
    "GraphQLErrorDetail",
    "GraphQLValidationError",
    "HostKeyChangedError",
    "JobError",
    "JobExpiredError",
    "JobState",
    "LocalPathError",
    "MissingApiKeyError",
    "NotFoundError",
    "PodNotReadyError",
    "RateLimitError",
    "RemoteCommandError",
    "RequestTimeoutError",
    "RunPodHybridError",
    "ServerError",
    "SshConnectionError",
    "TransportError",
    "UnsafeArchiveError",
]


class RunPodHybridError(Exception):
    """Base of every error runpod-hybrid raises on purpose."""


class ConfigError(RunPodHybridError):
    """A configuration file or value is wrong; the message names the file and the problem."""


class MissingApiKeyError(ConfigError):
    """No API key was found, though the operation needs one."""

    def __init__(self, profile: str, config_path: str) -> None:
        self.profile = profile
        self.config_path = config_path
        super().__init__(
            "No RunPod API key found. Provide one in any of these ways:\n"
            "  1. pass it explicitly (api_key=... in Python, or the key argument of the client),\n"
            "  2. set the environment variable RUNPOD_API_KEY,\n"
            f'  3. put it in {config_path} as `api_key = "..."` under [{profile}] '
            '(what `runpod config` writes) or as top-level `apiKey = "..."` (what runpodctl writes).\n'
            "Without a key, only offline commands work (`rph config`, `rph pods create --dry-run`)."
        )


class LocalPathError(RunPodHybridError):
    """A local file or dir the operation needs (a work dir, an inputs file, an upload) is missing or unusable."""


class BudgetExceededError(RunPodHybridError):
    """A create or submit would exceed a cost cap from the settings or the job."""

    def __init__(self, message: str, *, cost_usd: float, cap_usd: float) -> None:
        self.cost_usd = cost_usd
        self.cap_usd = cap_usd
        super().__init__(message)


class ApiUnavailableError(RunPodHybridError):
    """The operation needs one of RunPod's control-plane APIs that this process cannot use: spot pods once
    GraphQL is gone (or ``control_plane = "rest"``), or something REST v2 does not offer."""


class ApiError(RunPodHybridError):
    """RunPod answered, but not with a usable result."""

    def __init__(self, message: str, *, status_code: int | None = None, body: Any = None) -> None:
        self.status_code = status_code
        self.body = body
        super().__init__(message)


class ApiStatusError(ApiError):
    """An HTTP status the SDK did not expect."""


class AuthError(ApiStatusError):
    """The key was refused (401/403) or is not linked to a user."""


class NotFoundError(ApiStatusError):
    """The resource does not exist (or no longer does)."""


class RateLimitError(ApiStatusError):
    """RunPod rate-limited the call (429)."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = 429,
        body: Any = None,
        retry_after_s: float | None = None,
    ) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(message, status_code=status_code, body=body)


class ServerError(ApiStatusError):
    """RunPod failed on its side (5xx)."""


class BadResponseError(ApiError):
    """The body was not the JSON the SDK expects (an HTML error page, an empty GraphQL answer...)."""


@dataclass(frozen=True)
class GraphQLErrorDetail:
    """One entry of a GraphQL ``errors`` list, kept whole."""

    message: str
    code: str | None = None
    path: tuple[str | int, ...] = ()
    extensions: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_api(cls, raw: Any) -> GraphQLErrorDetail:
        if not isinstance(raw, Mapping):
            return cls(message=str(raw))
        extensions = raw.get("extensions") if isinstance(raw.get("extensions"), Mapping) else {}
        assert isinstance(extensions, Mapping)
        path = raw.get("path") if isinstance(raw.get("path"), list) else []
        assert isinstance(path, list)
        code = extensions.get("code")
        return cls(
            message=str(raw.get("message", "")),
            code=str(code) if code is not None else None,
            path=tuple(p for p in path if isinstance(p, str | int)),
            extensions=dict(extensions),
        )

    def describe(self) -> str:
        where = ".".join(str(p) for p in self.path)
        parts = [self.message]
        if self.code:
            parts.append(f"[{self.code}]")
        if where:
            parts.append(f"at {where}")
        return " ".join(parts)


class GraphQLError(ApiError):
    """The GraphQL answer held ``errors``; ``details`` keeps every one."""

    def __init__(
        self,
        message: str,
        *,
        details: Sequence[GraphQLErrorDetail],
        status_code: int | None = 200,
        body: Any = None,
    ) -> None:
        self.details = tuple(details)
        super().__init__(message, status_code=status_code, body=body)

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(d.code for d in self.details if d.code)


class GraphQLValidationError(GraphQLError):
    """RunPod rejected the query document itself: a bug in this SDK, not in the caller's input."""


class CapacityError(ApiError):
    """No GPU is free for the request. Callers fall back to another GPU type, cloud or data center."""

    def __init__(self, message: str, *, details: Sequence[GraphQLErrorDetail] = (), body: Any = None) -> None:
        self.details = tuple(details)
        super().__init__(message, status_code=200, body=body)


class TransportError(RunPodHybridError):
    """The HTTP request did not complete."""


class ConnectionFailedError(TransportError):
    """Could not connect. ``request_sent`` is False when the request surely never left this machine."""

    def __init__(self, message: str, *, request_sent: bool) -> None:
        self.request_sent = request_sent
        super().__init__(message)


class RequestTimeoutError(TransportError):
    """The connect or read timed out. After a read timeout the request may have been acted on."""

    def __init__(self, message: str, *, request_sent: bool) -> None:
        self.request_sent = request_sent
        super().__init__(message)


class PodNotReadyError(RunPodHybridError):
    """A pod did not become usable; ``reason`` names the failure mode (crash_loop, no_runtime, exited,
    no_public_ip, no_ssh_port, ssh_refused, timeout)."""

    def __init__(self, message: str, *, pod_id: str, reason: str) -> None:
        self.pod_id = pod_id
        self.reason = reason
        super().__init__(message)


class RemoteCommandError(RunPodHybridError):
    """A command on a pod could not run, or exited non-zero when success was required."""

    def __init__(self, message: str, *, exit_code: int | None = None, stderr: str = "") -> None:
        self.exit_code = exit_code
        self.stderr = stderr
        super().__init__(message)


class SshConnectionError(RemoteCommandError):
    """ssh could not connect or authenticate (exit code 255)."""


class HostKeyChangedError(RemoteCommandError):
    """The pod presented a host key other than the one pinned on first contact."""


class UnsafeArchiveError(RemoteCommandError):
    """A download held a path outside the target dir, an outward link, or a device file."""


class JobError(RunPodHybridError):
    """A job ended without a result (FAILED, TIMED_OUT or CANCELLED), or a wait for it ran out (``state`` is
    then where it still is). ``error`` is the worker's error; a command job also carries its ``exit_code``
    and the end of its log (``log_tail``)."""

    def __init__(
        self,
        message: str,
        *,
        job_id: str,
        state: JobState,
        error: Any = None,
        exit_code: int | None = None,
        log_tail: str = "",
    ) -> None:
        self.job_id = job_id
        self.state: JobState = state
        self.error = error
        self.exit_code = exit_code
        self.log_tail = log_tail
        super().__init__(message)


class JobExpiredError(JobError):
    """The job is no longer known to RunPod (its ttl passed), so its status and result are gone."""
