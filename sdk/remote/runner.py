"""The :class:`CommandRunner` seam: where a job's commands and files go (a pod over SSH, or this machine),
its result types, and reading a child's output pipes to their end with a bounded tail."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

from runpod_hybrid.errors import RemoteCommandError

OutputCallback = Callable[[str, bytes], None]
ProgressCallback = Callable[[int, int | None], None]

MAX_CAPTURE_BYTES = 1 << 20
_CHUNK = 1 << 16


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    stdout: str
    stderr: str
    duration_s: float
    timed_out: bool = False
    stdout_truncated: bool = False
    stderr_truncated: bool = False

    def check(self, what: str = "command") -> ExecResult:
        """Raise :class:`RemoteCommandError` unless the command exited 0."""
        if self.exit_code != 0:
            tail = self.stderr.strip()[-500:]
            raise RemoteCommandError(
                f"{what} exited {self.exit_code}"
                + (" (timed out)" if self.timed_out else "")
                + (f": {tail}" if tail else ""),
                exit_code=self.exit_code,
                stderr=self.stderr,
            )
        return self


@dataclass(frozen=True)
class TransferResult:
    method: str  # rsync | tar | copy
    files: int
    bytes_sent: int
    duration_s: float


class CommandRunner(Protocol):
    """Where a job's commands and files go: a pod over SSH, or this machine (the local backend)."""

    def exec(
        self,
        command: str | Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        timeout_s: float | None = None,
        on_output: OutputCallback | None = None,
        stdin: bytes | None = None,
    ) -> ExecResult: ...

    def upload(
        self,
        local_path: Path,
        remote_path: str,
        *,
        exclude: Sequence[str] = (),
        delete: bool = False,
        on_progress: ProgressCallback | None = None,
    ) -> TransferResult: ...

    def download(
        self, remote_path: str, local_path: Path, *, on_progress: ProgressCallback | None = None
    ) -> TransferResult: ...


class PipeCapture:
    """Reads one output pipe of a child to its end in a thread: each chunk goes to the callback as it comes,
    and the last ``limit`` bytes are kept."""

    def __init__(self, pipe: IO[bytes], name: str, on_output: OutputCallback | None, limit: int) -> None:
        self.name = name
        self.on_output = on_output
        self.limit = limit
        self.data = bytearray()
        self.truncated = False
        self._thread = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self._thread.start()

    def _read(self, pipe: IO[bytes]) -> None:
        read = getattr(pipe, "read1", pipe.read)
        while chunk := read(_CHUNK):
            if self.on_output:
                self.on_output(self.name, chunk)
            self.data += chunk
            if len(self.data) > self.limit:
                del self.data[: len(self.data) - self.limit]
                self.truncated = True

    def text(self) -> str:
        """Everything kept, once the pipe has closed."""
        self._thread.join()
        return self.data.decode("utf-8", errors="replace")
