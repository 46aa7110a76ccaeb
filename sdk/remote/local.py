"""A :class:`CommandRunner` on this machine: the local backend runs pod-shaped jobs through the very same
runner script, in a sandbox dir that plays the pod's ``/workspace``."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from runpod_hybrid.errors import LocalPathError, RemoteCommandError

from .ignore import walk_included
from .runner import ExecResult, OutputCallback, PipeCapture, ProgressCallback, TransferResult


class LocalRunner:
    """Runs ``sh -c`` here; uploads and downloads are copies."""

    def __init__(self, max_capture_bytes: int = 1 << 20) -> None:
        self.max_capture_bytes = max_capture_bytes

    def exec(
        self,
        command: str | Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        timeout_s: float | None = None,
        on_output: OutputCallback | None = None,
        stdin: bytes | None = None,
    ) -> ExecResult:
        argv = ["sh", "-c", command] if isinstance(command, str) else list(command)
        started = time.monotonic()
        process = subprocess.Popen(
            argv,
            cwd=cwd,
            env={**os.environ, **(env or {})},
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        assert process.stdout is not None and process.stderr is not None
        out = PipeCapture(process.stdout, "stdout", on_output, self.max_capture_bytes)
        err = PipeCapture(process.stderr, "stderr", on_output, self.max_capture_bytes)
        if stdin is not None:
            assert process.stdin is not None
            process.stdin.write(stdin)
            process.stdin.close()
        timed_out = False
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()
            timed_out = True
        return ExecResult(
            124 if timed_out else process.returncode,
            out.text(),
            err.text(),
            round(time.monotonic() - started, 3),
            timed_out,
            out.truncated,
            err.truncated,
        )

    def upload(
        self,
        local_path: Path,
        remote_path: str,
        *,
        exclude: Sequence[str] = (),
        delete: bool = False,
        on_progress: ProgressCallback | None = None,
    ) -> TransferResult:
        started = time.monotonic()
        source, target = Path(local_path), Path(remote_path)
        if not source.exists():
            raise LocalPathError(f"Nothing to upload: {source} does not exist.")
        if source.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
            return TransferResult("copy", 1, source.stat().st_size, round(time.monotonic() - started, 3))
        included, _ = walk_included(source, tuple(exclude))
        if delete and target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True, exist_ok=True)
        sent = 0
        for rel in included:
            src, dst = source / rel, target / rel
            if src.is_symlink():
                dst.parent.mkdir(parents=True, exist_ok=True)
                dst.unlink(missing_ok=True)
                dst.symlink_to(os.readlink(src))
            elif src.is_dir():
                dst.mkdir(parents=True, exist_ok=True)
            else:
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst)
                sent += src.stat().st_size
            if on_progress:
                on_progress(sent, None)
        return TransferResult("copy", len(included), sent, round(time.monotonic() - started, 3))

    def download(
        self, remote_path: str, local_path: Path, *, on_progress: ProgressCallback | None = None
    ) -> TransferResult:
        started = time.monotonic()
        source, target = Path(remote_path), Path(local_path)
        if not source.exists():
            raise RemoteCommandError(
                f"download of {remote_path} failed: no such file or directory", exit_code=2
            )
        if source.is_dir():
            shutil.copytree(source, target, symlinks=True, dirs_exist_ok=True)
            files = sum(1 for p in target.rglob("*") if p.is_file())
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
            files = 1
        return TransferResult("copy", files, 0, round(time.monotonic() - started, 3))
