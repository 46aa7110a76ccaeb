"""A long-lived ``sh`` on the pod, over the multiplexed SSH connection, that runs commands one at a time.

Through the master connection a new SSH session still costs a channel, a fresh login shell and its rc files
(a ``pyenv init`` or ``conda init`` in ``~/.bashrc`` alone is 70 ms or more) and the container-env import:
that is most of a warm exec. The session pays them once. Each command then runs in a subshell with stdin
from /dev/null, so it cannot read the session's commands or change its state (cwd, variables), and ends by
printing a marker with a fresh random nonce on stdout (with the exit code) and on stderr; everything before
the markers is the command's output, streamed as it comes.

Not for commands that need stdin. A background process that keeps writing to the session's stdout after
its command ended has that output dropped between commands, and mixed into the output of a command that is
running meanwhile (plain ``ssh`` would have waited for it to close instead): redirect it, as ``rph``'s
detached jobs do. The
session's environment is the login shell's at session start: later edits of rc files reach new sessions.
"""

from __future__ import annotations

import os
import re
import secrets
import selectors
import subprocess
import threading
import time
import weakref
from collections.abc import Callable
from typing import NamedTuple

from .errors import SshConnectionError
from .logs import get_logger

log = get_logger(__name__)

OutputCallback = Callable[[str, bytes], None]

_CHUNK = 1 << 16


class BoundedOutput:
    """One output stream of a command: each chunk goes to the callback as it comes, the tail is kept."""

    def __init__(self, name: str, on_output: OutputCallback | None, limit: int) -> None:
        self.name = name
        self.on_output = on_output
        self.limit = limit
        self.data = bytearray()
        self.truncated = False

    def add(self, chunk: bytes) -> None:
        if not chunk:
            return
        if self.on_output:
            self.on_output(self.name, chunk)
        self.data += chunk
        if len(self.data) > self.limit:
            del self.data[: len(self.data) - self.limit]
            self.truncated = True

    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")


class _MarkedStream(BoundedOutput):
    """A session pipe during one command: its output ends where the command's end marker begins."""

    def __init__(
        self, name: str, marker: re.Pattern[bytes], on_output: OutputCallback | None, limit: int
    ) -> None:
        super().__init__(name, on_output, limit)
        self.marker = marker
        self.pending = b""
        self.match: re.Match[bytes] | None = None

    def feed(self, chunk: bytes) -> None:
        self.pending += chunk
        self.match = self.marker.search(self.pending)
        if self.match:
            self.add(self.pending[: self.match.start()])
            self.pending = b""  # whatever follows the marker belongs to no command
            return
        keep = 64  # longer than any marker: a marker split across reads is still found
        self.add(self.pending[:-keep])
        self.pending = self.pending[-keep:]


class SessionRun(NamedTuple):
    exit_code: int
    stdout: BoundedOutput
    stderr: BoundedOutput
    duration_s: float
    killed: bool


def _end(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
    process.wait()
    for pipe in (process.stdin, process.stdout, process.stderr):
        if pipe is not None:
            pipe.close()


class ShellSession:
    def __init__(self, ssh_argv: list[str], prelude: str, *, ready_timeout_s: float) -> None:
        """Start the session and run ``prelude`` in it; ``ready`` tells whether it answered in time."""
        self._process = subprocess.Popen(
            ssh_argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        # Also when the session is dropped unclosed (its runner garbage-collected): no ssh client lingers.
        self._finalizer = weakref.finalize(self, _end, self._process)
        self._lock = threading.Lock()
        ready = f"RPH-READY-{secrets.token_hex(12)}"
        assert self._process.stdout is not None
        seen = b""
        try:
            self._write(f"{prelude}\necho {ready}\n")
        except BrokenPipeError:
            ready_timeout_s = 0  # ssh already gave up: read what it said, if anything
        deadline = time.monotonic() + ready_timeout_s
        with selectors.DefaultSelector() as selector:
            selector.register(self._process.stdout.fileno(), selectors.EVENT_READ)
            while ready.encode() + b"\n" not in seen:
                remaining = deadline - time.monotonic()
                chunk = os.read(self._process.stdout.fileno(), _CHUNK) if selector.select(remaining) else b""
                if not chunk:
                    self.close()
                    break
                seen += chunk
        self.ready = self.alive

    @property
    def alive(self) -> bool:
        return self._process.poll() is None

    def close(self) -> None:
        self._finalizer()  # runs _end once, however often it is called

    def _write(self, text: str) -> None:
        assert self._process.stdin is not None
        self._process.stdin.write(text.encode())
        self._process.stdin.flush()

    def _drain(self, selector: selectors.BaseSelector) -> bool:
        """Drop what background processes of earlier commands wrote since; False when the session ended.
        Bounded: a process that never stops writing must not hold the next command back."""
        for _ in range(64):
            ready = selector.select(0)
            if not ready:
                break
            for key, _ in ready:
                chunk = os.read(key.fd, _CHUNK)
                if not chunk:
                    self.close()
                    return False
                log.info("remote.session_output_dropped", bytes=len(chunk))
        return True

    def run(
        self, script: str, *, timeout_s: float | None, on_output: OutputCallback | None, limit: int
    ) -> SessionRun | None:
        """Run ``script`` in a subshell, or return None when the session cannot take it (busy with another
        thread's command, or dead), or died before the command wrote anything. ``killed``: ``timeout_s``
        passed first, and the session was closed."""
        if not self._lock.acquire(blocking=False):
            return None
        try:
            if not self.alive:
                return None
            assert self._process.stdout is not None and self._process.stderr is not None
            marker = f"RPH-END-{secrets.token_hex(12)}"
            out = _MarkedStream("stdout", re.compile(rf"\n{marker} (\d+)\n".encode()), on_output, limit)
            err = _MarkedStream("stderr", re.compile(rf"\n{marker}\n".encode()), on_output, limit)
            with selectors.DefaultSelector() as selector:
                selector.register(self._process.stdout.fileno(), selectors.EVENT_READ, out)
                selector.register(self._process.stderr.fileno(), selectors.EVENT_READ, err)
                if not self._drain(selector):
                    return None
                started = time.monotonic()
                try:
                    self._write(
                        f"(\n{script}\n) </dev/null\nrph_rc=$?\n"
                        f"printf '\\n{marker} %d\\n' \"$rph_rc\"\nprintf '\\n{marker}\\n' >&2\n"
                    )
                except BrokenPipeError:
                    return None
                deadline = None if timeout_s is None else started + timeout_s
                while out.match is None or err.match is None:
                    wait_s = None if deadline is None else deadline - time.monotonic()
                    ready = selector.select(wait_s) if wait_s is None or wait_s > 0 else []
                    if not ready:
                        self.close()  # the command outlived its time and the pod-side timeout
                        return SessionRun(124, out, err, time.monotonic() - started, True)
                    for key, _ in ready:
                        chunk = os.read(key.fd, _CHUNK)
                        if not chunk:
                            self.close()
                            if not out.data and not out.pending:
                                # As for a session of its own: no output, so the caller may reconnect and
                                # run it again.
                                return None
                            raise SshConnectionError(
                                "The SSH session to the pod ended while a command was running; it may or may "
                                "not have finished. Check the pod (`rph pods get`) before running it again.",
                                exit_code=255,
                                stderr=err.text(),
                            )
                        stream: _MarkedStream = key.data
                        if stream.match is None:
                            stream.feed(chunk)
            assert out.match is not None
            return SessionRun(int(out.match.group(1)), out, err, time.monotonic() - started, False)
        finally:
            self._lock.release()
