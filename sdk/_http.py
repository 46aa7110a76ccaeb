"""The HTTP transport: the only module that talks HTTP, on one ``requests.Session`` per transport.

requests does the HTTP: connection pools, TLS, proxies from the environment (credentials included, and
``NO_PROXY``), CA bundles (``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE``). We add what RunPod needs:

- our User-Agent on every call (Cloudflare answers urllib's default one with 403 "Error 1010");
- the key through an auth object, so ``~/.netrc`` can never replace it, and no redirect is ever followed, so
  the key never travels to another host;
- a connect timeout, a read timeout, and a deadline on the whole response: a server that trickles its body
  a byte at a time never passes the per-read timeout, so the body is read in chunks against the clock;
- status-to-error mapping (the SDK's own tree, secrets redacted from bodies);
- the one retry policy (tenacity, with injected ``sleep`` and ``clock``):
  - reads (idempotent calls) retry on connection errors, timeouts, 429 and 5xx;
  - non-idempotent calls (pod create, serverless ``/run``) retry only when the request surely never left
    this machine (connection refused, DNS failure, connect timeout) or on 429, because a retried create
    that did arrive makes a second billable resource. A caller that must check what a 429 did before
    sending again (a pod create: it looks up its client token first) turns the 429 retry off.
  Waits are jittered exponential backoff, ``Retry-After`` is honoured, and a total deadline bounds it all.

``requests`` is imported when the first transport is built, so ``rph --help`` does not pay for it.
"""

from __future__ import annotations

import email.utils
import json
import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from tenacity import RetryCallState, Retrying, retry_if_exception

from . import __version__
from ._logging import get_logger, redact_text
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

if TYPE_CHECKING:
    import requests

log = get_logger(__name__)

USER_AGENT = f"runpod-hybrid/{__version__}"
_CHUNK = 1 << 16


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try. ``deadline_s`` bounds the whole call, waits included."""

    max_attempts: int = 5
    initial_backoff_s: float = 0.5
    max_backoff_s: float = 8.0
    deadline_s: float = 60.0


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
) -> ApiStatusError | BadResponseError | ConnectionFailedError | None:
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
    if 300 <= status < 400:
        return ApiStatusError(
            f"RunPod answered {what} with a redirect (HTTP {status}) to {headers.get('Location', '?')!r}, "
            "which is not followed: it would send the API key elsewhere. Check the API URL and any proxy.",
            status_code=status,
            body=body,
        )
    if status == 407:
        return ConnectionFailedError(
            f"Your HTTP proxy refused {what} (HTTP 407 Proxy Authentication Required): put its credentials in "
            "the proxy URL, e.g. HTTPS_PROXY=http://user:password@proxy:3128.",
            request_sent=False,
        )
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


def _is_retryable(exc: BaseException, idempotent: bool, retry_rate_limited: bool = True) -> bool:
    if isinstance(exc, RateLimitError):
        return retry_rate_limited
    if isinstance(exc, ConnectionFailedError | RequestTimeoutError) and not exc.request_sent:
        return True
    return idempotent and isinstance(exc, ConnectionFailedError | RequestTimeoutError | ServerError)


def _never_arrived(exc: BaseException) -> bool:
    """True for a requests error raised before any byte of the request reached the server: refused, DNS, a
    failed TLS handshake, or a proxy that would not connect us."""
    import requests
    import urllib3.exceptions

    if isinstance(exc, requests.exceptions.ConnectTimeout | requests.exceptions.SSLError):
        return True
    reason = exc.args[0] if exc.args else None
    reason = getattr(reason, "reason", reason)  # urllib3's MaxRetryError wraps the cause
    return isinstance(
        reason, urllib3.exceptions.NewConnectionError | urllib3.exceptions.ProxyError
    ) or isinstance(exc, requests.exceptions.ProxyError)


class _BearerAuth:
    """The key in ``Authorization: Bearer``; as the session's auth, requests never consults ``~/.netrc``.
    A callable key is asked for at the first request (so a missing key fails the call that needs it)."""

    def __init__(self, key: ApiKey | Callable[[], ApiKey]) -> None:
        self._key = key

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        key = self._key if isinstance(self._key, ApiKey) else self._key()
        request.headers["Authorization"] = f"Bearer {key.reveal()}"
        return request


class HttpTransport:
    """JSON over HTTPS with auth, timeouts, typed errors and the retry policy."""

    def __init__(
        self,
        api_key: ApiKey | Callable[[], ApiKey] | None,
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
        """``session`` lets a caller bring its own (e.g. with response hooks); one is made otherwise."""
        self._api_key = api_key
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._clock = clock
        self._wall_clock = wall_clock
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._session = session or _new_session()
        self._session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})
        self._session.auth = _BearerAuth(api_key) if api_key is not None else None

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
        retry_rate_limited: bool = True,
    ) -> Any:
        """Send one call (retrying per the policy) and return the parsed JSON body. ``retry_rate_limited``
        False hands a 429 to the caller at once (:class:`RateLimitError`) instead of waiting and resending."""
        started = self._clock()
        policy = self.retry
        path = urlsplit(url).path

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
                path=path,
                attempt=state.attempt_number,
                wait_s=round(state.upcoming_sleep, 3),
                error=type(exc).__name__,
            )

        retrying = Retrying(
            stop=stop,
            wait=wait,
            retry=retry_if_exception(lambda exc: _is_retryable(exc, idempotent, retry_rate_limited)),
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
        import requests
        import urllib3.exceptions

        parts = urlsplit(url)
        what = f"{method} {parts.path}"
        read_s = read_timeout_s or self.read_timeout_s
        body = None if json_body is None else json.dumps(json_body, allow_nan=False).encode()
        headers = {"Content-Type": "application/json"} if body is not None else {}
        started = self._clock()
        try:
            response = self._session.request(
                method,
                url,
                data=body,
                params=params,
                headers=headers,
                timeout=(self.connect_timeout_s, read_s),
                allow_redirects=False,
                stream=True,
            )
            with response:
                raw = self._read_body(response, started, self.connect_timeout_s + read_s, what)
        except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError) as exc:
            # urllib3's own errors come from reading the body, after the request was sent.
            sent = isinstance(exc, urllib3.exceptions.HTTPError) or not _never_arrived(exc)
            if isinstance(exc, requests.exceptions.Timeout | urllib3.exceptions.TimeoutError):
                raise RequestTimeoutError(
                    f"{what} timed out ({'no answer within' if sent else 'could not connect within'} "
                    f"{read_s if sent else self.connect_timeout_s:g} s). Check your network; for a create, list "
                    "your pods before retrying, as the request may have been acted on.",
                    request_sent=sent,
                ) from exc
            raise ConnectionFailedError(
                f"Could not reach RunPod at {parts.hostname} for {what}: {_exception_summary(exc)}. Check your "
                "network, proxy (HTTPS_PROXY, NO_PROXY) and DNS"
                + (", then list your resources before retrying a create." if sent else "."),
                request_sent=sent,
            ) from exc
        log.debug(
            "http.response",
            method=method,
            path=parts.path,
            status=response.status_code,
            elapsed_s=round(self._clock() - started, 3),
        )
        if response.status_code == 204:  # REST v2 deletes and terminates answer with no body
            return None
        if 200 <= response.status_code < 300:
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = None
            if parsed is not None:
                return parsed
        text = raw.decode("utf-8", errors="replace")
        error = error_for_response(response.status_code, response.headers, text, what, self._wall_clock())
        assert error is not None  # a JSON success returned above
        raise error

    def _read_body(self, response: requests.Response, started: float, limit_s: float, what: str) -> bytes:
        """The whole body, read as it arrives, failing once ``limit_s`` have passed since ``started`` (each
        read alone is bounded by the read timeout only, which a server trickling bytes never trips)."""
        chunks: list[bytes] = []
        response.raw.decode_content = True  # gzip undone, as requests does when it reads a body itself
        while chunk := response.raw.read1(_CHUNK):
            chunks.append(chunk)
            if self._clock() - started > limit_s:
                raise RequestTimeoutError(
                    f"{what}: the answer was still arriving after {limit_s:g} s; gave up. The server or a proxy "
                    "is sending it very slowly: retry later.",
                    request_sent=True,
                )
        return b"".join(chunks)


def _new_session() -> requests.Session:
    import requests

    return requests.Session()


def _exception_summary(exc: BaseException) -> str:
    return redact_text(f"{type(exc).__name__}: {exc}")[:300]
