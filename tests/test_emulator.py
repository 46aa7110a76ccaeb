"""The local endpoint's HTTP, as RunPod's API behaves: every body read (kept-alive connections survive early
answers, chunked bodies count), its routes and bad values, its key, RunPod's retention and body limits. The
test plays the worker side of RunPod's protocol itself, so no worker process is needed."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any

import pytest

from runpod_hybrid.serverless import LocalEndpoint


class FakeClock:
    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def local(clock: FakeClock) -> Iterator[LocalEndpoint]:
    with LocalEndpoint(["sample_tasks"], workers=0, clock=clock, api_key="the-key") as endpoint:
        yield endpoint


class Connection:
    """One kept-alive HTTP/1.1 connection, requests as clients send them."""

    def __init__(self, local: LocalEndpoint) -> None:
        self.http = http.client.HTTPConnection("127.0.0.1", local.port, timeout=30)
        self.prefix = "/v2/local"

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        key: str | bytes | None = "Bearer the-key",
        raw: bytes | Iterator[bytes] | None = None,
    ) -> tuple[int, Any]:
        headers: dict[str, str | bytes] = {"Content-Type": "application/json"}
        if key is not None:
            headers["Authorization"] = key
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        self.http.request(
            method,
            self.prefix + path,
            body=data,
            headers=headers,
            encode_chunked=not isinstance(raw, bytes | None),
        )
        response = self.http.getresponse()
        payload = response.read()
        return response.status, json.loads(payload) if payload else None

    def close(self) -> None:
        self.http.close()


@pytest.fixture
def conn(local: LocalEndpoint) -> Iterator[Connection]:
    connection = Connection(local)
    yield connection
    connection.close()


def take_and_finish(conn: Connection, output: Any) -> str:
    """Play a worker: take the next job, post its result."""
    status, job = conn.request("GET", "/job-take/w1?gpu=LOCAL", key=None)
    assert status == 200
    status, _ = conn.request("POST", f"/job-done/w1/{job['id']}?isStream=false", {"output": output}, key=None)
    assert status == 200
    return str(job["id"])


def test_a_kept_alive_connection_survives_early_answers_to_requests_with_bodies(conn: Connection) -> None:
    """Each of these answers comes before (or without) using the body; the next request on the same
    connection must still be read as a request."""
    assert conn.request("POST", "/cancel/no-such-job", {"pad": "x" * 100})[0] == 404
    assert conn.request("POST", "/retry/no-such-job", {"pad": "x" * 100})[0] == 404
    assert conn.request("POST", "/purge-queue", {"pad": "x" * 100}) == (
        200,
        {"removed": 0, "status": "completed"},
    )
    assert conn.request("POST", "/run", {"input": 1}, key="Bearer wrong")[0] == 401
    assert conn.request("POST", "/no-such-route", {"input": 1})[0] == 404
    assert conn.request("POST", "/health", {"input": 1})[0] == 405
    status, body = conn.request("POST", "/run", {"input": {"task": "square", "value": 2}})
    assert status == 200 and body["status"] == "IN_QUEUE"


def test_a_chunked_body_is_read(conn: Connection) -> None:
    chunks = iter([b'{"input": {"task": "echo", ', b'"value": "in pieces"}}'])
    status, body = conn.request("POST", "/run", raw=chunks)
    assert status == 200
    status, job = conn.request("GET", "/job-take/w1", key=None)
    assert job == {"id": body["id"], "input": {"task": "echo", "value": "in pieces"}}
    assert conn.request("GET", "/health")[0] == 200  # and the connection goes on


def test_status_sync_and_post_stream(conn: Connection) -> None:
    _, queued = conn.request("POST", "/run", {"input": 1})
    status, body = conn.request("GET", f"/status-sync/{queued['id']}?wait=1000")
    assert (status, body["status"]) == (200, "IN_QUEUE")  # held up to wait, then the status as it is
    job_id = take_and_finish(conn, {"answer": 42})
    for method in ("GET", "POST"):
        status, body = conn.request(method, f"/status-sync/{job_id}?wait=5000")
        assert (status, body["status"], body["output"]) == (200, "COMPLETED", {"answer": 42})
    status, streamed = conn.request("POST", f"/stream/{job_id}")
    assert (status, streamed["status"]) == (200, "COMPLETED")


@pytest.mark.parametrize(
    ("path", "body", "problem"),
    [
        ("/runsync?wait=abc", {"input": 1}, "wait must be a number"),
        ("/run", {"input": 1, "policy": {"executionTimeout": "abc"}}, "policy.executionTimeout"),
        ("/run", {"input": 1, "policy": {"executionTimeout": 1000}}, "between 5000"),
        ("/run", {"input": 1, "policy": {"ttl": None}}, "policy.ttl"),
        ("/run", {"input": 1, "policy": "fast"}, "policy must be an object"),
        ("/run", {"webhook": "http://x"}, '"input" field'),
        ("/status-sync/abc?wait=soon", None, "wait must be a number"),
    ],
)
def test_bad_values_get_a_400_json_error(conn: Connection, path: str, body: Any, problem: str) -> None:
    status, answer = conn.request("GET" if "status" in path else "POST", path, body)
    assert status == 400 and problem in answer["error"]
    assert conn.request("GET", "/health")[0] == 200


def test_the_key_is_required_as_runpod_asks_for_it(conn: Connection) -> None:
    assert conn.request("GET", "/health", key=None) == (401, {"error": "Unauthorized"})
    assert conn.request("GET", "/health", key="Bearer not-the-key")[0] == 401
    assert conn.request("GET", "/health", key="Bearer th€-key".encode())[0] == 401  # any bytes: a 401
    assert conn.request("GET", "/health", key="bearer the-key")[0] == 200  # the scheme is case-insensitive
    assert conn.request("GET", "/health", key="the-key")[0] == 200  # RunPod's curl examples send it bare


def test_retention_as_runpod_documents_it(conn: Connection, clock: FakeClock) -> None:
    """A /run result stays 30 min after the job ends, a /runsync one 60 s; /runsync ids start with sync-."""
    _, queued = conn.request("POST", "/run", {"input": 1})
    run_id = take_and_finish(conn, 1)
    assert run_id == queued["id"]
    _, synced = conn.request("POST", "/runsync?wait=1000", {"input": 2})
    assert synced["id"].startswith("sync-")
    take_and_finish(conn, 2)
    clock.now_s += 59
    assert conn.request("GET", f"/status/{synced['id']}")[0] == 200
    clock.now_s += 2
    assert conn.request("GET", f"/status/{synced['id']}")[0] == 404
    clock.now_s += 30 * 60 - 61 - 1
    assert conn.request("GET", f"/status/{run_id}")[0] == 200
    clock.now_s += 2
    assert conn.request("GET", f"/status/{run_id}")[0] == 404


def test_body_limits_are_decimal_megabytes(conn: Connection) -> None:
    def body_of(size: int) -> bytes:
        head, tail = b'{"input": "', b'"}'
        return head + b"x" * (size - len(head) - len(tail)) + tail

    assert conn.request("POST", "/run", raw=body_of(10_000_000))[0] == 200
    status, answer = conn.request("POST", "/run", raw=body_of(10_000_001))
    assert status == 413 and "10 MB" in answer["error"]
    assert conn.request("POST", "/runsync?wait=1000", raw=body_of(20_000_000))[0] == 200
    assert conn.request("POST", "/runsync?wait=1000", raw=body_of(20_000_001))[0] == 413
