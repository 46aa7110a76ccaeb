"""The HTTP transport: the only module that imports ``requests``.

One ``requests.Session``, connect/read timeouts on every call, our User-Agent (Cloudflare answers urllib's
default one with 403 "Error 1010"), Bearer auth, status-to-error mapping, and the one retry policy:

- reads (idempotent calls) retry on connection errors, timeouts, 429 and 5xx;
- non-idempotent calls (pod create, serverless ``/run``) retry only when the request surely never left this
  machine (connection refused, DNS failure, connect timeout) or on 429, because a retried create that did
  arrive makes a second billable resource.

Waits are jittered exponential backoff, ``Retry-After`` is honoured, and a total deadline bounds it all.
``sleep`` and ``clock`` are injected so tests record waits instead of sleeping.
"""

from __future__ import annotations

import email.utils
import json
import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3.exceptions
from tenacity import RetryCallState, Retrying, retry_if_exception

from . import __version__
from .config import ApiKey
from .errors import (
    ApiStatusError,
    AuthError,
    BadResponseError,
    ConnectionFailedError,
    NotFoundError,
    RateLimitError,
    RequestTimeoutError,
    ServerError,
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


def _request_never_sent(exc: requests.RequestException) -> bool:
    """True when the connection was never made, so the server cannot have seen the request."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if not isinstance(exc, requests.ConnectionError):
        return False
    reason: Any = exc.args[0] if exc.args else None
    reason = getattr(reason, "reason", reason)  # urllib3 MaxRetryError wraps the cause
    # NameResolutionError subclasses NewConnectionError: DNS failures count as never sent too.
    return isinstance(reason, urllib3.exceptions.NewConnectionError | urllib3.exceptions.ConnectTimeoutError)


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
        session: requests.Session | None = None,
    ) -> None:
        self._api_key = api_key
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._clock = clock
        self._wall_clock = wall_clock
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._session = session or requests.Session()
        # One pool slot per concurrent caller (batch maps poll from many threads).
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=64)
        self._session.mount("https://", adapter)
        self._session.mount("http://", adapter)
        self._session.headers["User-Agent"] = USER_AGENT

    def close(self) -> None:
        self._session.close()

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
        return retrying(self._send_once, method, url, json_body, params, read_timeout_s)

    def _send_once(
        self,
        method: str,
        url: str,
        json_body: Any,
        params: Mapping[str, str] | None,
        read_timeout_s: float | None,
    ) -> Any:
        what = f"{method} {urlsplit(url).path}"
        headers = {"Accept": "application/json"}
        if self._api_key is not None:
            headers["Authorization"] = f"Bearer {self._api_key.reveal()}"
        timeout = (self.connect_timeout_s, read_timeout_s or self.read_timeout_s)
        started = self._clock()
        try:
            response = self._session.request(
                method, url, json=json_body, params=params, headers=headers, timeout=timeout
            )
        except requests.Timeout as exc:
            sent = not _request_never_sent(exc)
            raise RequestTimeoutError(
                f"{what} timed out ({'no answer within' if sent else 'could not connect within'} "
                f"{timeout[1] if sent else timeout[0]:g} s). Check your network; for a create, list your pods "
                "before retrying, as the request may have been acted on.",
                request_sent=sent,
            ) from exc
        except requests.RequestException as exc:
            sent = not _request_never_sent(exc)
            host = urlsplit(url).hostname
            raise ConnectionFailedError(
                f"Could not reach RunPod at {host} for {what}: {type(exc).__name__}. Check your network, proxy "
                "and DNS" + (", then list your resources before retrying a create." if sent else "."),
                request_sent=sent,
            ) from exc
        log.debug(
            "http.response",
            method=method,
            path=urlsplit(url).path,
            status=response.status_code,
            elapsed_s=round(self._clock() - started, 3),
        )
        error = error_for_response(
            response.status_code, response.headers, response.text, what, self._wall_clock()
        )
        if error is not None:
            raise error
        return response.json()
