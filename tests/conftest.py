"""Shared fixtures: an isolated home, the sentinel key, recorded sleeps, the RunPod stand-in, cassettes."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import sys
import tempfile
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
from runpod_hybrid.controlplane import GraphQLClient, GraphQLPodApi, PodApi, RestClient, RestPodApi

from rest_standin import RestStandinServer, rest_equivalent, start_rest_standin
from runpod_standin import Fault, StandinServer, start_standin

ROOT = Path(__file__).resolve().parent.parent
CASSETTES = ROOT / "cassettes"
REAL_GRAPHQL_URL = "https://api.runpod.io/graphql"
REAL_REST_URL = "https://api.runpod.io/v2"
CONTROL_PLANES = ("graphql", "rest")
# The REST v2 operation that stands for each GraphQL one, for faults injected in tests of both backends.
REST_OPERATION = {
    "CreateOnDemandPod": "createPod",
    "ResumePod": "podAction",
    "StopPod": "podAction",
    "GetPod": "getPod",
    "ListPods": "listPods",
    "GpuTypes": "listGpuTypes",
}

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


@pytest.fixture
def rest_standin(standin: StandinServer) -> Iterator[RestStandinServer]:
    """RunPod's REST v2 API on loopback, serving the same account as ``standin``."""
    server, stop = start_rest_standin(standin.state)
    yield server
    stop()
    assert server.spec_violations == [], "the REST v2 stand-in answered outside RunPod's spec"


@dataclass
class ApiTarget:
    """Where a cassette test sends its calls: RunPod's real URLs on replay, the stand-ins while recording.

    ``backend`` is the control-plane API under test (``graphql`` or ``rest``): :meth:`pod_api` builds it.
    ``sent`` is every request the SDK sent through :meth:`transport` in this run (a response hook on the
    session), so tests assert on what was really sent, never on the cassette's recorded list."""

    url: str
    key: str
    standin: StandinServer | None
    sent: list[requests.PreparedRequest] = field(default_factory=list)
    backend: str = "graphql"
    rest_url: str = REAL_REST_URL
    rest: RestStandinServer | None = None

    def seed(self) -> Any:
        """The stand-in's state to set up a recording; None on replay (the cassette holds the answers)."""
        return self.standin.state if self.standin else None

    def transport(self, fake_time: FakeTime, **options: Any) -> HttpTransport:
        session = requests.Session()
        session.hooks["response"].append(lambda response, *_a, **_k: self.sent.append(response.request))
        return HttpTransport(
            ApiKey(self.key, "test"), sleep=fake_time.sleep, clock=fake_time.clock, session=session, **options
        )

    def pod_api(self, fake_time: FakeTime, **options: Any) -> PodApi:
        """The control-plane API under test, over :meth:`transport`."""
        transport = self.transport(fake_time, **options)
        if self.backend == "rest":
            return RestPodApi(RestClient(transport, self.rest_url))
        return GraphQLPodApi(GraphQLClient(transport, self.url))

    def inject(self, graphql_operation: str, *faults: Fault) -> None:
        """Queue faults (while recording) on an operation named as GraphQL names it; on REST v2 they land on
        the matching operation, as RunPod's REST answer to the same condition."""
        state = self.seed()
        if state is None:
            return
        if self.backend == "rest":
            state.faults[REST_OPERATION[graphql_operation]].extend(rest_equivalent(f) for f in faults)
        else:
            state.faults[graphql_operation].extend(faults)

    def sent_bodies(self, operation: str | None = None) -> list[dict[str, Any]]:
        """The JSON bodies sent, in order; only GraphQL ``operation``'s when given."""
        bodies = [json.loads(r.body) for r in self.sent if r.body]
        return [b for b in bodies if operation is None or b.get("operationName") == operation]

    def sent_calls(self, method: str, path: str) -> list[Any]:
        """The JSON bodies (None for none) of the REST v2 calls sent to ``method`` ``path`` (a regex)."""
        return [
            json.loads(r.body) if r.body else None
            for r in self.sent
            if r.method == method and re.fullmatch(".*/v2" + path, r.path_url.split("?")[0])
        ]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "both_control_planes: run the test's runpod_api against GraphQL and against REST v2"
    )
    config.addinivalue_line(
        "markers", "graphql_only: a both_control_planes test of something only GraphQL has"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "runpod_api" not in metafunc.fixturenames:
        return
    if metafunc.definition.get_closest_marker("both_control_planes") is None:
        return
    only = ["graphql"] if metafunc.definition.get_closest_marker("graphql_only") else list(CONTROL_PLANES)
    metafunc.parametrize("control_plane", only, indirect=True)


@pytest.fixture
def control_plane(request: pytest.FixtureRequest) -> str:
    """The control-plane API a ``runpod_api`` test runs against (``both_control_planes`` tests get both)."""
    return str(getattr(request, "param", "graphql"))


@pytest.fixture
def runpod_api(record_mode: str, control_plane: str) -> Iterator[ApiTarget]:
    if record_mode == "none":
        yield ApiTarget(REAL_GRAPHQL_URL, SENTINEL_KEY, None, backend=control_plane)
        return
    if os.environ.get("RPH_RECORD_LIVE") and os.environ.get("RUNPOD_API_KEY"):
        yield ApiTarget(REAL_GRAPHQL_URL, os.environ["RUNPOD_API_KEY"], None, backend=control_plane)
        return
    server, stop = start_standin(SENTINEL_KEY)
    rest, stop_rest = start_rest_standin(server.state)
    yield ApiTarget(server.url, SENTINEL_KEY, server, backend=control_plane, rest_url=rest.url, rest=rest)
    stop_rest()
    stop()
    assert rest.spec_violations == [], "the REST v2 stand-in answered outside RunPod's spec"


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
    elif request.host == "127.0.0.1" and request.path.startswith("/v2/"):
        query = request.uri.partition("?")[2]
        request.uri = REAL_REST_URL + request.path.removeprefix("/v2") + (f"?{query}" if query else "")
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


@pytest.fixture
def default_cassette_name(request: pytest.FixtureRequest) -> str:
    """A test's cassette: its name with its parameters, except that the GraphQL run of a
    ``both_control_planes`` test keeps the plain name (``test_x``, ``test_y[message]``) and the REST v2 run is
    ``test_x[rest]``, ``test_y[rest-message]``."""
    name: str = request.node.name
    if "control_plane" in getattr(getattr(request.node, "callspec", None), "params", {}):
        name = re.sub(r"\[graphql\]$", "", name).replace("[graphql-", "[").replace("-graphql]", "]")
    return name


@pytest.fixture(autouse=True)
def vcr_test_has_its_cassette(request: pytest.FixtureRequest) -> None:
    """On replay, a vcr test without its cassette fails at once, instead of passing if it happens to make no
    request."""
    if request.node.get_closest_marker("vcr") is None or request.getfixturevalue("record_mode") != "none":
        return
    path = cassette_file(
        request.getfixturevalue("vcr_cassette_dir"), request.getfixturevalue("default_cassette_name")
    )
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
    # Temp files of this run, SSH control sockets included (in this process and in the CLI processes tests
    # start), live under the run's base temp dir: what is left is ours, and a developer's own ssh
    # masters in /tmp are neither counted nor touched.
    base = tmp_path_factory.getbasetemp()
    (base / "tmp").mkdir(exist_ok=True)
    saved = os.environ.get("TMPDIR"), tempfile.tempdir
    os.environ["TMPDIR"] = tempfile.tempdir = str(base / "tmp")
    if not sys.platform.startswith("linux"):
        yield
        return
    before = set(_processes())
    yield
    markers = (str(base),)
    deadline = time.monotonic() + 10
    while (left := leftover_processes(before, markers)) and time.monotonic() < deadline:
        time.sleep(0.1)  # processes told to stop are exiting: synchronisation, not pacing
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    tempfile.tempdir = saved[1]
    if saved[0] is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = saved[0]
    if left:
        pytest.fail(
            "the test run left processes behind:\n" + "\n".join(f"  {p}: {c}" for p, c in left.items())
        )
