"""Answer ``initialize`` and ``tools/list`` over stdio while the mcp SDK is still loading.

Importing mcp costs about 0.4 s (it builds its pydantic protocol models), and that is most of what an MCP client
waits for at start-up. The answers to these two requests depend only on the request and on our tool
definitions, so each launch records the SDK's own answers, and the next launch with the same code sends the
recorded answer at once. The SDK still receives every message, in order, through a pipe on fd 0 and answers
everything itself (its session state is exactly what it would be without this). Its answer to a request that was
already answered is dropped from the wire and compared with the record: if it differs, the record is rewritten
and a warning logged, so a wrong record can never outlive one launch. The record is keyed by the source of both
our packages, the installed SDK and pydantic, the Python version and the server's options, so any change there
starts from the SDK's answers again.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import runpod_hybrid
from runpod_hybrid.logs import get_logger

log = get_logger("runpod_hybrid_mcp.fast_start")

RECORDED_METHODS = ("initialize", "tools/list")
# Written by this module into the SDK's output pipe after the SDK has finished; never valid JSON-RPC.
END_OF_SDK_OUTPUT = b"\x00rph-mcp: end of SDK output\n"
SDK_DISTRIBUTIONS = ("mcp", "mcp_types", "pydantic", "pydantic_core")


def cache_dir(env: dict[str, str] | None = None) -> Path:
    env = dict(os.environ) if env is None else env
    base = Path(env["XDG_CACHE_HOME"]) if env.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return base / "runpod-hybrid"


def record_key(options: str) -> str:
    """What the recorded answers depend on. Installed packages are known by their ``__init__`` file's stat
    (an install rewrites it), found without importing them."""
    digest = hashlib.sha256(f"{sys.version}\0{options}\0".encode())
    for package in (runpod_hybrid.__file__, __file__):
        for path in sorted(Path(str(package)).parent.glob("*.py")):
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    for name in SDK_DISTRIBUTIONS:
        spec = importlib.util.find_spec(name)
        origin = spec.origin if spec else None
        stat = os.stat(origin) if origin else None
        digest.update(f"{name}\0{origin}\0{stat and (stat.st_mtime_ns, stat.st_size)}\0".encode())
    return digest.hexdigest()[:32]


def _request_key(method: str, params: Any, protocol_version: str | None) -> str | None:
    """The part of a request that its answer depends on; None when it is not one we answer early."""
    if method not in RECORDED_METHODS or not isinstance(params, dict | None):
        return None
    rest = {k: v for k, v in (params or {}).items() if k not in ("_meta", "clientInfo")}
    if method == "tools/list":
        if rest or protocol_version is None:  # a cursor (only the first page is recorded), or not initialized
            return None
        rest = {"negotiated": protocol_version}
    return f"{method} {json.dumps(rest, sort_keys=True)}"


class AnswerRecord:
    """The SDK's answers from earlier launches, one JSON file per record key."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            loaded = json.loads(path.read_text())
        except (OSError, ValueError):
            loaded = {}
        self._answers: dict[str, Any] = loaded if isinstance(loaded, dict) else {}
        self._lock = threading.Lock()

    def get(self, key: str) -> Any:
        with self._lock:
            return self._answers.get(key)

    def put(self, key: str, result: Any) -> None:
        with self._lock:
            if self._answers.get(key) == result:
                return
            self._answers[key] = result
            text = json.dumps(self._answers)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            scratch = self.path.with_name(f".{self.path.name}.{os.getpid()}")
            scratch.write_text(text)
            os.replace(scratch, self.path)  # atomic: a concurrent launch reads the old or the new record
        except OSError as exc:
            log.warning("mcp_answer_record_unwritable", path=str(self.path), error=str(exc))


class StdioFront:
    """Sits between the client's stdio and the SDK's: answers recorded requests at once, forwards everything."""

    def __init__(self, record: AnswerRecord, wire_in: BinaryIO, wire_out: BinaryIO) -> None:
        self.record = record
        self.wire_in = wire_in
        self.wire_out = wire_out
        self._write_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._answered: Counter[str] = Counter()  # request ids answered from the record, per id
        self._pending: dict[str, str] = {}  # request id -> request key, for recorded methods
        self._protocol_version: str | None = None

    def _send(self, line: bytes) -> None:
        with self._write_lock:
            self.wire_out.write(line)
            self.wire_out.flush()

    def pump_client(self, to_sdk: BinaryIO) -> None:
        """Client -> SDK, answering recorded requests on the way. Closing ``to_sdk`` at EOF ends the SDK's run."""
        with to_sdk:
            for line in self.wire_in:
                self._maybe_answer(line)
                to_sdk.write(line)
                to_sdk.flush()

    def _maybe_answer(self, line: bytes) -> None:
        try:
            message = json.loads(line)
        except ValueError:
            return  # the SDK answers malformed input itself
        if not isinstance(message, dict) or "id" not in message:
            return
        with self._state_lock:
            key = _request_key(str(message.get("method")), message.get("params"), self._protocol_version)
            if key is None:
                return
            request_id = json.dumps(message["id"])
            self._pending[request_id] = key
            result = self.record.get(key)
            if result is None:
                return
            self._answered[request_id] += 1
            if "protocolVersion" in result:
                self._protocol_version = result["protocolVersion"]
        self._send(json.dumps({"jsonrpc": "2.0", "id": message["id"], "result": result}).encode() + b"\n")

    def pump_sdk(self, from_sdk: BinaryIO) -> None:
        """SDK -> client, dropping answers the client already has and recording the SDK's own."""
        for line in from_sdk:
            if line == END_OF_SDK_OUTPUT:
                return
            if self._should_forward(line):
                self._send(line)

    def _should_forward(self, line: bytes) -> bool:
        try:
            message = json.loads(line)
        except ValueError:
            return True
        if not isinstance(message, dict) or "method" in message or "id" not in message:
            return True
        request_id = json.dumps(message["id"])
        with self._state_lock:
            key = self._pending.pop(request_id, None)
            already_sent = self._answered[request_id] > 0
            if already_sent:
                self._answered[request_id] -= 1
            result = message.get("result")
            if key is not None and isinstance(result, dict):
                if not already_sent and "protocolVersion" in result:
                    self._protocol_version = result["protocolVersion"]
                if already_sent and self.record.get(key) != result:
                    log.warning("mcp_recorded_answer_was_stale", request=key.split(" ")[0])
        if key is not None and isinstance(result, dict):
            self.record.put(key, result)
        return not already_sent


def serve_stdio(run_sdk: Callable[[], None], options: str) -> None:
    """Run ``run_sdk`` (which serves stdio on fds 0 and 1) behind a StdioFront on the process's real stdio."""
    wire_in = os.fdopen(os.dup(0), "rb")
    wire_out = os.fdopen(os.dup(1), "wb")
    to_sdk_r, to_sdk_w = os.pipe()
    from_sdk_r, from_sdk_w = os.pipe()
    os.dup2(to_sdk_r, 0)
    os.dup2(from_sdk_w, 1)
    os.close(to_sdk_r)
    record = AnswerRecord(cache_dir() / f"mcp-answers-{record_key(options)}.json")
    front = StdioFront(record, wire_in, wire_out)
    client_pump = threading.Thread(
        target=front.pump_client, args=(os.fdopen(to_sdk_w, "wb"),), name="rph-mcp-client", daemon=True
    )
    sdk_pump = threading.Thread(
        target=front.pump_sdk, args=(os.fdopen(from_sdk_r, "rb"),), name="rph-mcp-sdk", daemon=True
    )
    client_pump.start()
    sdk_pump.start()
    try:
        run_sdk()
    finally:
        # The SDK keeps a duplicate of fd 1 open for good, so its pipe never reaches EOF: mark the end instead.
        os.write(from_sdk_w, END_OF_SDK_OUTPUT)
        sdk_pump.join()
