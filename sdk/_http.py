"""The HTTP transport: the only module that talks HTTP.

urllib3 pools (the engine under ``requests``; its session layer of cookies, hooks, netrc and per-call
environment scans cost half of each call's CPU, and batch maps poll a lot), connect/read timeouts on every call,
our User-Agent (Cloudflare answers urllib's default one with 403 "Error 1010"), Bearer auth, status-to-error
mapping, and the one retry policy:

- reads (idempotent calls) retry on connection errors, timeouts, 429 and 5xx;
- non-idempotent calls (pod create, serverless ``/run``) retry only when the request surely never left this
  machine (connection refused, DNS failure, connect timeout) or on 429, because a retried create that did
  arrive makes a second billable resource.

Waits are jittered exponential backoff, ``Retry-After`` is honoured, and a total deadline bounds it all.
``sleep`` and ``clock`` are injected so tests record waits instead of sleeping. Proxies come from the usual
environment variables (``HTTPS_PROXY``, ``NO_PROXY``...), CA certificates from ``REQUESTS_CA_BUNDLE``,
``CURL_CA_BUNDLE``, ``SSL_CERT_FILE`` or certifi, read once per origin. Redirects are not followed: RunPod's
APIs do not redirect, and following one would send the key to another host.
"""

from __future__ import annotations

import email.utils
import json
import os
import random
import re
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, urlencode, urlsplit

import certifi
import urllib3
from tenacity import RetryCallState, Retrying, retry_if_exception

from . import __version__
from .config import ApiKey
from .errors import (
    ApiError,
    ApiStatusError,
    AuthError,
    BadResponseError,
    ConnectionFailedError,
    NotFoundError,
    RateLimitError,
    RequestTimeoutError,
    ServerError,
    TransportError,
)
from .logs import get_logger
from .redact import redact_text

log = get_logger(__name__)

USER_AGENT = f"runpod-hybrid/{__version__}"


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try. ``deadline_s`` bounds the whole call, waits included."""

    max_attempts: int = 5
    initial_backoff_s: float = 0.5
    max_backoff_s: float = 8.0
    deadline_s: float = 60.0


def _environment_proxy(scheme: str, host: str) -> str | None:
    """The proxy the environment names for this scheme and host, as curl and requests read it."""
    if urllib.request.proxy_bypass(host):
        return None
    proxies = urllib.request.getproxies()
    return proxies.get(scheme) or proxies.get("all")


def _ca_certs() -> str:
    return (
        os.environ.get("REQUESTS_CA_BUNDLE")
        or os.environ.get("CURL_CA_BUNDLE")
        or os.environ.get("SSL_CERT_FILE")
        or certifi.where()
    )


def _retry_after_s(value: str | None, now_epoch_s: float) -> float | None:
    if not value:
        return None
    value = value.strip()
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now_epoch_s)


def _body_snippet(text: str, limit: int = 200) -> str:
    """A short, tag-free, secret-free excerpt of a body for an error message."""
    text = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", text, flags=re.S | re.I)
    text = re.sub(r"<[^>]+>", " ", text)
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[:limit] + "…"
    return redact_text(text)


def _api_message(body: Any) -> str | None:
    """The human message from the error bodies RunPod uses (GraphQL errors, REST problem+json, serverless)."""
    if not isinstance(body, Mapping):
        return None
    errors = body.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], Mapping):
        return str(errors[0].get("message", ""))
    for key in ("error", "message", "detail", "title"):
        if isinstance(body.get(key), str):
            return str(body[key])
    return None


def error_for_response(
    status: int, headers: Mapping[str, str], text: str, what: str, now_epoch_s: float
) -> ApiStatusError | BadResponseError | None:
    """Map a response to the typed error it stands for, or None when it is a JSON success."""
    content_type = headers.get("Content-Type", "")
    try:
        body: Any = json.loads(text) if text else None
        parsed = True
    except ValueError:
        body, parsed = None, False
    if 200 <= status < 300:
        if parsed and body is not None:
            return None
        return BadResponseError(
            f"RunPod answered {what} with HTTP {status} but a body that is not JSON "
            f"({content_type or 'no content type'}): {_body_snippet(text) or 'empty'}. "
            "This is usually a proxy or outage page: retry later.",
            status_code=status,
        )
    detail = _api_message(body) if parsed else _body_snippet(text)
    detail = redact_text(detail) if detail else f"no detail ({content_type or 'empty body'})"
    if status in (401, 403):
        return AuthError(
            f"RunPod refused the API key for {what} (HTTP {status}): {detail}. The key is wrong, revoked, or "
            "lacks the permission this call needs. Create a key with read/write access in the RunPod console "
            "(Settings > API Keys) and set RUNPOD_API_KEY.",
            status_code=status,
            body=body,
        )
    if status == 404:
        return NotFoundError(
            f"RunPod has no such resource ({what}, HTTP 404): {detail}.", status_code=404, body=body
        )
    if status == 429:
        retry_after = _retry_after_s(headers.get("Retry-After"), now_epoch_s)
        return RateLimitError(
            f"RunPod rate-limited {what} (HTTP 429): {detail}. Slow down"
            + (f"; it asked to wait {retry_after:g} s." if retry_after is not None else "."),
            body=body,
            retry_after_s=retry_after,
        )
    if status >= 500:
        return ServerError(
            f"RunPod had a server error on {what} (HTTP {status}): {detail}. This is usually temporary: "
            "retry in a minute; if it persists, check https://uptime.runpod.io.",
            status_code=status,
            body=body,
        )
    return ApiStatusError(f"RunPod rejected {what} (HTTP {status}): {detail}.", status_code=status, body=body)


def _is_retryable(exc: BaseException, idempotent: bool) -> bool:
    if isinstance(exc, RateLimitError):
        return True
    if isinstance(exc, ConnectionFailedError | RequestTimeoutError) and not exc.request_sent:
        return True
    return idempotent and isinstance(exc, ConnectionFailedError | RequestTimeoutError | ServerError)


class HttpTransport:
    """JSON over HTTPS with auth, timeouts, typed errors and the retry policy."""

    def __init__(
        self,
        api_key: ApiKey | None,
        *,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 30.0,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self._api_key = api_key
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._clock = clock
        self._wall_clock = wall_clock
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._managers: dict[str | None, urllib3.PoolManager] = {}  # by proxy
        # By origin: what sends there, and whether it takes the whole URL (a proxy) or the path.
        self._senders: dict[str, tuple[Callable[..., urllib3.BaseHTTPResponse], bool]] = {}
        self._managers_lock = threading.Lock()

    def close(self) -> None:
        with self._managers_lock:
            for manager in self._managers.values():
                manager.clear()
            self._senders.clear()

    def _sender_for(
        self, parts: SplitResult, url: str
    ) -> tuple[Callable[..., urllib3.BaseHTTPResponse], str]:
        """What sends to this URL's origin, and the URL to give it. Without a proxy that is the origin's own
        connection pool and the path: the pool manager's per-call URL parsing and pool lookup were a fifth
        of a status poll's CPU."""
        origin = f"{parts.scheme}://{parts.netloc}"
        found = self._senders.get(origin)
        if found is None:
            proxy = _environment_proxy(parts.scheme, parts.hostname or "")
            with self._managers_lock:
                manager = self._managers.get(proxy)
                if manager is None:
                    # One pool slot per concurrent caller (batch maps poll from many threads).
                    options: dict[str, Any] = {"num_pools": 4, "maxsize": 64, "ca_certs": _ca_certs()}
                    manager = (
                        urllib3.ProxyManager(proxy, **options) if proxy else urllib3.PoolManager(**options)
                    )
                    self._managers[proxy] = manager
            found = (manager.urlopen, True) if proxy else (manager.connection_from_url(origin).urlopen, False)
            self._senders[origin] = found
        sender, whole_url = found
        return sender, url if whole_url else url[len(origin) :] or "/"

    def request(
        self,
        method: str,
        url: str,
        *,
        json_body: Any = None,
        params: Mapping[str, str] | None = None,
        idempotent: bool,
        read_timeout_s: float | None = None,
    ) -> Any:
        """Send one call (retrying per the policy) and return the parsed JSON body."""
        started = self._clock()
        first_failure: BaseException | None = None
        try:  # the first attempt outside tenacity: most calls need no retry, and polls are hot
            return self._send_once(method, url, json_body, params, read_timeout_s)
        except (ApiError, TransportError) as exc:
            if not _is_retryable(exc, idempotent):
                raise
            first_failure = exc
        policy = self.retry

        def stop(state: RetryCallState) -> bool:
            if state.attempt_number >= policy.max_attempts:
                return True
            remaining = policy.deadline_s - (self._clock() - started)
            exc = state.outcome.exception() if state.outcome else None
            if isinstance(exc, RateLimitError) and exc.retry_after_s is not None:
                return exc.retry_after_s > remaining
            return remaining <= 0

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            if isinstance(exc, RateLimitError) and exc.retry_after_s is not None:
                return exc.retry_after_s
            base = min(policy.max_backoff_s, policy.initial_backoff_s * 2.0 ** (state.attempt_number - 1))
            remaining = max(0.0, policy.deadline_s - (self._clock() - started))
            return min(remaining, base * (0.5 + self._rng.random() / 2))

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            log.warning(
                "http.retry",
                method=method,
                path=urlsplit(url).path,
                attempt=state.attempt_number,
                wait_s=round(state.upcoming_sleep, 3),
                error=type(exc).__name__,
            )

        retrying = Retrying(
            stop=stop,
            wait=wait,
            retry=retry_if_exception(lambda exc: _is_retryable(exc, idempotent)),
            sleep=self._sleep,
            before_sleep=before_sleep,
            reraise=True,
        )

        def attempt() -> Any:
            nonlocal first_failure
            if first_failure is not None:  # tenacity's attempt 1 is the one already made
                failure, first_failure = first_failure, None
                raise failure
            return self._send_once(method, url, json_body, params, read_timeout_s)

        return retrying(attempt)

    def _send_once(
        self,
        method: str,
        url: str,
        json_body: Any,
        params: Mapping[str, str] | None,
        read_timeout_s: float | None,
    ) -> Any:
        parts = urlsplit(url)  # once: status polls are hot
        what = f"{method} {parts.path}"
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if self._api_key is not None:
            headers["Authorization"] = f"Bearer {self._api_key.reveal()}"
        body = None
        if json_body is not None:
            body = json.dumps(json_body, allow_nan=False).encode()
            headers["Content-Type"] = "application/json"
        if params:
            url = f"{url}?{urlencode(params)}"
        timeout = urllib3.Timeout(connect=self.connect_timeout_s, read=read_timeout_s or self.read_timeout_s)
        started = self._clock()
        try:
            send, target = self._sender_for(parts, url)
            response = send(
                method, target, body=body, headers=headers, timeout=timeout, retries=False, redirect=False
            )
        except urllib3.exceptions.HTTPError as exc:
            # NewConnectionError (refused, DNS) subclasses ConnectTimeoutError: neither reached the server.
            sent = not isinstance(exc, urllib3.exceptions.ConnectTimeoutError)
            if isinstance(exc, urllib3.exceptions.TimeoutError) and not isinstance(
                exc, urllib3.exceptions.NewConnectionError
            ):
                raise RequestTimeoutError(
                    f"{what} timed out ({'no answer within' if sent else 'could not connect within'} "
                    f"{timeout.read_timeout if sent else timeout.connect_timeout:g} s). Check your network; for a "
                    "create, list your pods before retrying, as the request may have been acted on.",
                    request_sent=sent,
                ) from exc
            raise ConnectionFailedError(
                f"Could not reach RunPod at {parts.hostname} for {what}: {type(exc).__name__}. Check "
                "your network, proxy and DNS"
                + (", then list your resources before retrying a create." if sent else "."),
                request_sent=sent,
            ) from exc
        log.debug(
            "http.response",
            method=method,
            path=parts.path,
            status=response.status,
            elapsed_s=round(self._clock() - started, 3),
        )
        if 200 <= response.status < 300:
            try:
                parsed = json.loads(response.data)
            except ValueError:
                parsed = None
            if parsed is not None:
                return parsed
        text = response.data.decode("utf-8", errors="replace")
        error = error_for_response(response.status, response.headers, text, what, self._wall_clock())
        assert error is not None  # a JSON success returned above
        raise error
