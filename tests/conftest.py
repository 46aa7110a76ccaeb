"""Shared fixtures: an isolated home, the sentinel key, recorded sleeps, the RunPod stand-in, cassettes."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import structlog

from runpod_hybrid._http import HttpTransport
from runpod_hybrid._logging import redact_value
from runpod_hybrid.config import ApiKey

from runpod_standin import StandinServer, start_standin

ROOT = Path(__file__).resolve().parent.parent
CASSETTES = ROOT / "cassettes"
REAL_GRAPHQL_URL = "https://api.runpod.io/graphql"

# A key-shaped sentinel: tests assert it never appears in output, logs, errors or cassettes.
SENTINEL_KEY = "rpa_SENTINEL0KEY1DO2NOT3LEAK4ABCDEFGHIJKLMNOPQ"
SCRUBBED_AUTH = "Bearer <scrubbed>"


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own HOME and XDG dirs, and no key from the developer's environment."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in (
        "XDG_CONFIG_HOME",
        "XDG_STATE_HOME",
        "XDG_CACHE_HOME",
        "RPH_CONFIG",
        "RUNPOD_PROFILE",
        "RPH_LOG_LEVEL",
    ):
        monkeypatch.delenv(name, raising=False)
    if not os.environ.get("RPH_RECORD_LIVE"):
        monkeypatch.delenv("RUNPOD_API_KEY", raising=False)
    return home


@pytest.fixture(autouse=True)
def reset_logging() -> Iterator[None]:
    """Entry points configure logging per process; tests that run one must not leak it to the next."""
    yield
    structlog.reset_defaults()
    root = logging.getLogger()
    for handler in [
        h
        for h in root.handlers
        if isinstance(h, logging.StreamHandler)
        and h.formatter
        and "ProcessorFormatter" in type(h.formatter).__name__
    ]:
        root.removeHandler(handler)
    root.setLevel(logging.WARNING)


def eventually(predicate: Callable[[], Any], timeout_s: float = 30.0) -> Any:
    """Wait until real processes (workers, detached jobs) reach a state: synchronisation, not pacing."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("condition not reached in time")


@dataclass
class FakeTime:
    """An injected clock whose sleeps only advance it, recording each wait."""

    now_s: float = 1000.0
    sleeps: list[float] = field(default_factory=list)

    def clock(self) -> float:
        return self.now_s

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now_s += seconds


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def standin() -> Iterator[StandinServer]:
    """A live stand-in of RunPod's GraphQL API on loopback (used directly by fault-injection tests)."""
    server, stop = start_standin(SENTINEL_KEY)
    yield server
    stop()


@dataclass
class ApiTarget:
    """Where a cassette test sends its calls: RunPod's real URL on replay, the stand-in while recording.

    ``sent`` is every request the SDK sent through :meth:`transport` in this run (a response hook on the
    session), so tests assert on what was really sent, never on the cassette's recorded list."""

    url: str
    key: str
    standin: StandinServer | None
    sent: list[requests.PreparedRequest] = field(default_factory=list)

    def seed(self) -> Any:
        """The stand-in's state to set up a recording; None on replay (the cassette holds the answers)."""
        return self.standin.state if self.standin else None

    def transport(self, fake_time: FakeTime, **options: Any) -> HttpTransport:
        session = requests.Session()
        session.hooks["response"].append(lambda response, *_a, **_k: self.sent.append(response.request))
        return HttpTransport(
            ApiKey(self.key, "test"), sleep=fake_time.sleep, clock=fake_time.clock, session=session, **options
        )

    def sent_bodies(self, operation: str | None = None) -> list[dict[str, Any]]:
        """The JSON bodies sent, in order; only GraphQL ``operation``'s when given."""
        bodies = [json.loads(r.body) for r in self.sent if r.body]
        return [b for b in bodies if operation is None or b.get("operationName") == operation]


@pytest.fixture
def runpod_api(record_mode: str) -> Iterator[ApiTarget]:
    if record_mode == "none":
        yield ApiTarget(REAL_GRAPHQL_URL, SENTINEL_KEY, None)
        return
    if os.environ.get("RPH_RECORD_LIVE") and os.environ.get("RUNPOD_API_KEY"):
        yield ApiTarget(REAL_GRAPHQL_URL, os.environ["RUNPOD_API_KEY"], None)
        return
    server, stop = start_standin(SENTINEL_KEY)
    yield ApiTarget(server.url, SENTINEL_KEY, server)
    stop()


def _scrub_body(raw: bytes | str | None) -> bytes | str | None:
    if not raw:
        return raw
    try:
        parsed = json.loads(raw)
    except ValueError:
        return raw
    return json.dumps(redact_value(parsed), sort_keys=True)


def scrub_request(request: Any) -> Any:
    """Before a request is saved or matched: the real host, no Authorization value, no pod env or keys."""
    if request.host == "127.0.0.1" and request.path == "/graphql":
        request.uri = REAL_GRAPHQL_URL
    request.body = _scrub_body(request.body)
    return request


def scrub_response(response: dict[str, Any]) -> dict[str, Any]:
    body = response.get("body", {})
    if body.get("string"):
        scrubbed = _scrub_body(body["string"])
        body["string"] = scrubbed.encode() if isinstance(scrubbed, str) else scrubbed
    headers = response.get("headers", {})
    for name in list(headers):
        if name.lower() in ("set-cookie", "cf-ray", "date", "server"):
            del headers[name]
    return response


def _json_body_matcher(r1: Any, r2: Any) -> None:
    def parse(raw: Any) -> Any:
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            return raw

    assert parse(r1.body) == parse(r2.body), "request bodies differ"


def pytest_recording_configure(config: Any, vcr: Any) -> None:
    vcr.register_matcher("json_body", _json_body_matcher)


@pytest.fixture(scope="module")
def vcr_config() -> dict[str, Any]:
    return {
        "filter_headers": [("authorization", SCRUBBED_AUTH), ("user-agent", "runpod-hybrid/test")],
        "before_record_request": scrub_request,
        "before_record_response": scrub_response,
        "match_on": ["method", "scheme", "host", "port", "path", "query", "json_body"],
        "decode_compressed_response": True,
    }


@pytest.fixture(scope="module")
def vcr_cassette_dir(request: pytest.FixtureRequest) -> str:
    """Cassettes live in ``cassettes/<sdk module>/``: tests/test_pods.py records into cassettes/pods/."""
    module = Path(str(request.node.fspath)).stem.removeprefix("test_")
    return str(CASSETTES / module)


def cassette_file(cassette_dir: str, test_name: str) -> Path:
    """Where pytest-recording keeps the cassette of a test (parametrized ids included)."""
    return Path(cassette_dir) / f"{test_name}.yaml"


@pytest.fixture(autouse=True)
def vcr_test_has_its_cassette(request: pytest.FixtureRequest) -> None:
    """On replay, a vcr test without its cassette fails at once, instead of passing if it happens to make no
    request."""
    if request.node.get_closest_marker("vcr") is None or request.getfixturevalue("record_mode") != "none":
        return
    path = cassette_file(request.getfixturevalue("vcr_cassette_dir"), request.node.name)
    if not path.exists():
        pytest.fail(
            f"{request.node.nodeid} is a vcr test without its cassette {path}; record it (cassettes/README.md)"
        )


def _processes() -> dict[int, tuple[int, str, str]]:
    """pid -> (parent pid, state, command line) of every process (Linux /proc)."""
    found: dict[int, tuple[int, str, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        found[int(entry.name)] = (int(stat[1]), stat[0], cmdline)
    return found


def leftover_processes(before: set[int], markers: tuple[str, ...]) -> dict[int, str]:
    """Live processes that were not there before the run and are ours: descendants of this process, or ones
    whose command line names a marker (our temp dirs, our SSH control sockets) after being orphaned."""
    procs = _processes()
    me = os.getpid()

    def descends(pid: int) -> bool:
        seen = set()
        while pid not in (0, 1) and pid not in seen:
            seen.add(pid)
            pid = procs[pid][0] if pid in procs else 0
            if pid == me:
                return True
        return False

    return {
        pid: cmd
        for pid, (ppid, state, cmd) in procs.items()
        if pid != me
        and pid not in before
        and state != "Z"
        and not (ppid == me and STDLIB_HELPER.search(cmd))
        and (descends(pid) or any(marker in cmd for marker in markers))
    }


# multiprocessing's own helpers (the local task pool starts workers from a fork server): one each per
# interpreter, started on first use, and they exit with it; their workers are not exempt.
STDLIB_HELPER = re.compile(r" -c from multiprocessing\.(forkserver|resource_tracker) import main;")


@pytest.fixture(scope="session", autouse=True)
def no_process_left_behind(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A test run leaves no process behind (sshd, ssh masters, shells, workers, heartbeats): checked at the
    end of the session; whatever is left is killed and the run fails, naming it."""
    if not sys.platform.startswith("linux"):
        yield
        return
    before = set(_processes())
    yield
    markers = (str(tmp_path_factory.getbasetemp()), f"rph-ssh-{os.getuid()}")
    deadline = time.monotonic() + 10
    while (left := leftover_processes(before, markers)) and time.monotonic() < deadline:
        time.sleep(0.1)  # processes told to stop are exiting: synchronisation, not pacing
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if left:
        pytest.fail(
            "the test run left processes behind:\n" + "\n".join(f"  {p}: {c}" for p, c in left.items())
        )
