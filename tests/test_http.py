"""The HTTP transport against a real loopback server (the RunPod stand-in), with recorded sleeps."""

from __future__ import annotations

import base64
import http.client
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar
from urllib.parse import urlsplit

import pytest

from runpod_hybrid import __version__
from runpod_hybrid._http import HttpTransport, RetryPolicy
from runpod_hybrid.config import ApiKey
from runpod_hybrid.errors import (
    ApiStatusError,
    AuthError,
    BadResponseError,
    ConnectionFailedError,
    RateLimitError,
    RequestTimeoutError,
    ServerError,
)

from conftest import SENTINEL_KEY, FakeTime
from runpod_standin import GATEWAY_PAGE, Fault, StandinServer

LIST = {"query": "query ListPods { myself { id } }", "operationName": "ListPods", "variables": {}}
CREATE = {
    "query": "mutation CreateOnDemandPod($input: PodFindAndDeployOnDemandInput!) "
    "{ podFindAndDeployOnDemand(input: $input) { id } }",
    "operationName": "CreateOnDemandPod",
    "variables": {"input": {"gpuTypeId": "NVIDIA GeForce RTX 4090", "cloudType": "SECURE"}},
}


def transport(fake_time: FakeTime, key: str = SENTINEL_KEY, **kwargs: object) -> HttpTransport:
    return HttpTransport(ApiKey(key, "test"), sleep=fake_time.sleep, clock=fake_time.clock, **kwargs)  # type: ignore[arg-type]


def test_auth_header_user_agent_and_no_key_in_url(standin: StandinServer, fake_time: FakeTime) -> None:
    body = transport(fake_time).request("POST", standin.url, json_body=LIST, idempotent=True)
    assert body["data"]["myself"]["id"] == "user-standin"
    path, headers = standin.state.requests[-1]
    assert headers["Authorization"] == f"Bearer {SENTINEL_KEY}"
    assert headers["User-Agent"] == f"runpod-hybrid/{__version__}"
    assert SENTINEL_KEY not in path
    assert fake_time.sleeps == []


def test_429_with_retry_after_waits_then_succeeds(standin: StandinServer, fake_time: FakeTime) -> None:
    standin.state.faults["ListPods"].append(
        Fault.http(429, '{"error": "rate limited"}', "application/json", **{"Retry-After": "3"})
    )
    body = transport(fake_time).request("POST", standin.url, json_body=LIST, idempotent=True)
    assert body["data"]["myself"]["id"] == "user-standin"
    assert fake_time.sleeps == [3.0]
    assert len(standin.state.calls_of("ListPods")) == 2


def test_429_on_a_create_is_retried_too(standin: StandinServer, fake_time: FakeTime) -> None:
    standin.state.faults["CreateOnDemandPod"].append(
        Fault.http(429, '{"error": "slow down"}', "application/json", **{"Retry-After": "2"})
    )
    transport(fake_time).request("POST", standin.url, json_body=CREATE, idempotent=False)
    assert fake_time.sleeps == [2.0]
    assert len(standin.state.pods) == 1


def test_a_caller_that_must_look_first_gets_the_429_at_once(
    standin: StandinServer, fake_time: FakeTime
) -> None:
    """A pod create looks its client token up before sending again (a 429 may hide a pod): the transport
    hands it the 429, with Retry-After, and sends nothing more."""
    standin.state.faults["CreateOnDemandPod"].append(
        Fault.http(429, '{"error": "slow down"}', "application/json", **{"Retry-After": "2"})
    )
    with pytest.raises(RateLimitError) as info:
        transport(fake_time).request(
            "POST", standin.url, json_body=CREATE, idempotent=False, retry_rate_limited=False
        )
    assert info.value.retry_after_s == 2.0
    assert fake_time.sleeps == [] and len(standin.state.calls_of("CreateOnDemandPod")) == 1


def test_retry_after_beyond_the_deadline_raises_instead_of_waiting(
    standin: StandinServer, fake_time: FakeTime
) -> None:
    standin.state.faults["ListPods"].append(
        Fault.http(429, "{}", "application/json", **{"Retry-After": "600"})
    )
    with pytest.raises(RateLimitError) as info:
        transport(fake_time).request("POST", standin.url, json_body=LIST, idempotent=True)
    assert info.value.retry_after_s == 600
    assert fake_time.sleeps == []


def test_502_html_on_a_read_is_retried_then_raised_as_server_error(
    standin: StandinServer, fake_time: FakeTime
) -> None:
    for _ in range(4):
        standin.state.faults["ListPods"].append(Fault.http(502, GATEWAY_PAGE))
    policy = RetryPolicy(max_attempts=4, initial_backoff_s=0.5, max_backoff_s=8, deadline_s=60)
    with pytest.raises(ServerError) as info:
        transport(fake_time, retry=policy).request("POST", standin.url, json_body=LIST, idempotent=True)
    assert info.value.status_code == 502
    assert "502 Bad Gateway" in str(info.value)
    assert "<" not in str(info.value)
    assert len(standin.state.calls_of("ListPods")) == 4
    # Jittered exponential backoff: each wait within [base/2, base] for base 0.5, 1, 2.
    assert len(fake_time.sleeps) == 3
    for wait, base in zip(fake_time.sleeps, (0.5, 1.0, 2.0), strict=True):
        assert base / 2 <= wait <= base


def test_502_then_success_on_a_read(standin: StandinServer, fake_time: FakeTime) -> None:
    standin.state.faults["ListPods"].append(Fault.http(502, GATEWAY_PAGE))
    body = transport(fake_time).request("POST", standin.url, json_body=LIST, idempotent=True)
    assert body["data"]["myself"]["id"] == "user-standin"
    assert len(fake_time.sleeps) == 1


def test_5xx_on_a_create_is_not_retried(standin: StandinServer, fake_time: FakeTime) -> None:
    standin.state.faults["CreateOnDemandPod"].append(Fault.http(503, "unavailable", "text/plain"))
    with pytest.raises(ServerError):
        transport(fake_time).request("POST", standin.url, json_body=CREATE, idempotent=False)
    assert len(standin.state.calls_of("CreateOnDemandPod")) == 1
    assert fake_time.sleeps == []


def test_read_timeout_on_a_create_is_raised_not_retried(standin: StandinServer, fake_time: FakeTime) -> None:
    standin.state.faults["CreateOnDemandPod"].append(Fault.hang())
    with pytest.raises(RequestTimeoutError) as info:
        transport(fake_time, read_timeout_s=0.2).request(
            "POST", standin.url, json_body=CREATE, idempotent=False
        )
    assert info.value.request_sent is True
    assert "list your pods" in str(info.value)
    assert len(standin.state.calls_of("CreateOnDemandPod")) == 1
    assert fake_time.sleeps == []


def test_dropped_connection_after_a_create_is_not_retried(
    standin: StandinServer, fake_time: FakeTime
) -> None:
    standin.state.faults["CreateOnDemandPod"].append(Fault.drop_after_apply())
    with pytest.raises(ConnectionFailedError) as info:
        transport(fake_time).request("POST", standin.url, json_body=CREATE, idempotent=False)
    assert info.value.request_sent is True
    assert len(standin.state.pods) == 1  # the pod exists: a blind retry would have made a second one
    assert fake_time.sleeps == []


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_connection_refused_on_a_create_is_retried(fake_time: FakeTime) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/graphql"
    policy = RetryPolicy(max_attempts=3)
    with pytest.raises(ConnectionFailedError) as info:
        transport(fake_time, retry=policy).request("POST", url, json_body=CREATE, idempotent=False)
    assert info.value.request_sent is False
    assert len(fake_time.sleeps) == 2
    assert SENTINEL_KEY not in str(info.value)


def test_deadline_bounds_total_waiting(fake_time: FakeTime) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/graphql"
    policy = RetryPolicy(max_attempts=100, initial_backoff_s=4, max_backoff_s=8, deadline_s=20)
    with pytest.raises(ConnectionFailedError):
        transport(fake_time, retry=policy).request("POST", url, json_body=LIST, idempotent=True)
    assert sum(fake_time.sleeps) <= 20 + 1e-9
    assert len(fake_time.sleeps) < 10


def test_wrong_key_is_an_auth_error_without_the_key(standin: StandinServer, fake_time: FakeTime) -> None:
    wrong = "rpa_WRONGKEY0000000000000000000000000000"
    with pytest.raises(AuthError) as info:
        transport(fake_time, key=wrong).request("POST", standin.url, json_body=LIST, idempotent=True)
    assert info.value.status_code == 401
    assert "key is wrong, revoked, or lacks the permission" in str(info.value)
    assert wrong not in str(info.value)
    assert fake_time.sleeps == []


def test_non_json_success_body_is_a_typed_error(standin: StandinServer, fake_time: FakeTime) -> None:
    standin.state.faults["ListPods"].append(Fault.http(200, "<html>maintenance</html>"))
    with pytest.raises(BadResponseError, match="not JSON"):
        transport(fake_time).request("POST", standin.url, json_body=LIST, idempotent=True)


def test_error_bodies_echoing_the_key_are_redacted(standin: StandinServer, fake_time: FakeTime) -> None:
    standin.state.faults["ListPods"].append(
        Fault.http(400, f'{{"error": "bad header Bearer {SENTINEL_KEY}"}}', "application/json")
    )
    with pytest.raises(ApiStatusError) as info:
        transport(fake_time).request("POST", standin.url, json_body=LIST, idempotent=True)
    assert SENTINEL_KEY not in str(info.value)
    assert "HTTP 400" in str(info.value)


class _ForwardProxy(BaseHTTPRequestHandler):
    """A plain-HTTP forward proxy on loopback: relays absolute-form requests and notes each one. With
    ``credentials`` set it demands them (Basic ``Proxy-Authorization``) and answers 407 otherwise."""

    seen: ClassVar[list[str]] = []
    credentials: ClassVar[str | None] = None
    auth_seen: ClassVar[list[str | None]] = []

    def _relay(self) -> None:
        self.auth_seen.append(self.headers.get("Proxy-Authorization"))
        if self.credentials is not None:
            expected = "Basic " + base64.b64encode(self.credentials.encode()).decode()
            if self.headers.get("Proxy-Authorization") != expected:
                self.send_response(407)
                self.send_header("Proxy-Authenticate", 'Basic realm="proxy"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        self.seen.append(self.path)
        target = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        connection = http.client.HTTPConnection(target.hostname or "", target.port)
        headers = {
            k: v
            for k, v in self.headers.items()
            if k.lower() not in ("proxy-connection", "connection", "proxy-authorization")
        }
        connection.request(self.command, target.path, body=body, headers=headers)
        answer = connection.getresponse()
        payload = answer.read()
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.getheader("Content-Type", "application/json"))
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _relay

    def log_message(self, *_args: object) -> None:
        pass


def test_proxy_from_the_environment_and_no_proxy(
    standin: StandinServer, fake_time: FakeTime, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = ThreadingHTTPServer(("127.0.0.1", 0), _ForwardProxy)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        for name in ("no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{proxy.server_address[1]}")
        body = transport(fake_time).request("POST", standin.url, json_body=LIST, idempotent=True)
        assert body["data"]["myself"]["id"] == "user-standin"
        assert _ForwardProxy.seen == [standin.url]
        assert standin.state.requests[-1][1]["Authorization"] == f"Bearer {SENTINEL_KEY}"
        monkeypatch.setenv("no_proxy", "127.0.0.1")
        transport(fake_time).request("POST", standin.url, json_body=LIST, idempotent=True)
        assert _ForwardProxy.seen == [standin.url]  # bypassed
    finally:
        proxy.shutdown()
        proxy.server_close()


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """A forward proxy on loopback (its port); the proxy variables of the developer's environment are cleared."""
    for name in ("no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.delenv(name, raising=False)
    _ForwardProxy.seen, _ForwardProxy.auth_seen, _ForwardProxy.credentials = [], [], None
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ForwardProxy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_a_proxy_that_demands_credentials_gets_them_from_the_proxy_url(
    standin: StandinServer, fake_time: FakeTime, monkeypatch: pytest.MonkeyPatch, proxy: int
) -> None:
    _ForwardProxy.credentials = "user:p@ss word"
    monkeypatch.setenv("http_proxy", f"http://user:p%40ss%20word@127.0.0.1:{proxy}")
    body = transport(fake_time).request("POST", standin.url, json_body=LIST, idempotent=True)
    assert body["data"]["myself"]["id"] == "user-standin"
    expected = "Basic " + base64.b64encode(b"user:p@ss word").decode()
    assert _ForwardProxy.auth_seen == [expected] and _ForwardProxy.seen == [standin.url]
    assert standin.state.requests[-1][1]["Authorization"] == f"Bearer {SENTINEL_KEY}"


def test_a_proxy_refusing_us_says_how_to_give_it_credentials(
    standin: StandinServer, fake_time: FakeTime, monkeypatch: pytest.MonkeyPatch, proxy: int
) -> None:
    _ForwardProxy.credentials = "user:secret"
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{proxy}")
    with pytest.raises(ConnectionFailedError, match="HTTP 407") as info:
        transport(fake_time).request("POST", standin.url, json_body=CREATE, idempotent=False)
    assert "HTTPS_PROXY=http://user:password@" in str(info.value) and info.value.request_sent is False
    assert standin.state.calls_of("CreateOnDemandPod") == []


def test_netrc_never_replaces_the_key(
    standin: StandinServer, fake_time: FakeTime, isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    netrc = isolated_home / ".netrc"
    netrc.write_text("machine 127.0.0.1 login someone password netrc-password\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    transport(fake_time).request("POST", standin.url, json_body=LIST, idempotent=True)
    assert standin.state.requests[-1][1]["Authorization"] == f"Bearer {SENTINEL_KEY}"


class _Redirector(BaseHTTPRequestHandler):
    """Answers every request with a redirect to another host, and counts what reaches it."""

    hits: ClassVar[list[str | None]] = []

    def do_POST(self) -> None:
        self.hits.append(self.headers.get("Authorization"))
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(307)
        self.send_header("Location", f"http://localhost:{self.server.server_address[1]}/elsewhere")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        pass


def test_a_redirect_is_not_followed(fake_time: FakeTime) -> None:
    _Redirector.hits = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Redirector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/graphql"
        with pytest.raises(ApiStatusError, match="redirect") as info:
            transport(fake_time).request("POST", url, json_body=LIST, idempotent=True)
        assert info.value.status_code == 307
        assert _Redirector.hits == [
            f"Bearer {SENTINEL_KEY}"
        ]  # once, to the host we asked; never to the target
    finally:
        server.shutdown()
        server.server_close()


class _Trickler(BaseHTTPRequestHandler):
    """A server that sends its JSON body one byte at a time, each well within a read timeout."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = b'{"data": {"padding": "' + b"x" * 200 + b'"}}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            for byte in body:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(0.01)  # the slow network this test is about
        except OSError:
            pass  # the client gave up, as it should

    def log_message(self, *_args: object) -> None:
        pass


def test_a_trickling_body_is_bounded_by_the_deadline_not_each_read() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Trickler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    ticks = [0.0]

    def clock() -> float:  # each look at the clock is one second later: reading 10 bytes takes "10 s"
        ticks[0] += 1.0
        return ticks[0]

    try:
        slow = HttpTransport(
            ApiKey(SENTINEL_KEY, "test"),
            connect_timeout_s=1,
            read_timeout_s=5,
            clock=clock,
            retry=RetryPolicy(max_attempts=1),
        )
        with pytest.raises(RequestTimeoutError, match="still arriving after 6 s") as info:
            slow.request(
                "POST", f"http://127.0.0.1:{server.server_address[1]}/x", json_body=LIST, idempotent=True
            )
        assert info.value.request_sent is True
        assert ticks[0] < 20  # it gave up after a few bytes, not after the whole body
    finally:
        server.shutdown()
        server.server_close()
