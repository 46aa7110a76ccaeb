"""A thin adapter over ``runpodctl send``/``receive`` (croc through RunPod's relays: no API key, one-time
codes, runpodctl on both ends; slower than rsync for big trees).

Per runpodctl's README, ``send`` prints ``Sending '<name>' (<size>)`` then ``Code is: <code>`` and blocks
until the receiver connects, so :func:`send` starts it in the background and hands back the code.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError, RemoteCommandError

_CODE = re.compile(r"^(?:Code is:\s*)?(\d+-[a-z]+(?:-[a-z]+)+)\s*$")
INSTALL_HINT = (
    "runpodctl is not on PATH. Install it with `wget -qO- cli.runpod.io | sudo bash` (Linux/macOS) or "
    "`brew install runpod/runpodctl/runpodctl`; RunPod pods have it already."
)


def _executable(explicit: str | None) -> str:
    found = explicit or shutil.which("runpodctl")
    if not found:
        raise ConfigError(INSTALL_HINT)
    return found


@dataclass
class SendSession:
    """A running ``runpodctl send``: give ``code`` to the receiver, then ``wait()``."""

    code: str
    process: subprocess.Popen[str]

    def wait(self, timeout_s: float | None = None) -> None:
        try:
            code = self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired as exc:
            self.cancel()
            raise RemoteCommandError(
                f"runpodctl send: no receiver within {timeout_s:g} s; cancelled."
            ) from exc
        if code != 0:
            raise RemoteCommandError(f"runpodctl send exited {code}.", exit_code=code)

    def cancel(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait()


def send(path: Path, *, executable: str | None = None, max_lines: int = 20) -> SendSession:
    """Start sending ``path`` and return once runpodctl has printed the one-time code."""
    if not Path(path).exists():
        raise FileNotFoundError(f"nothing to send at {path}")
    process = subprocess.Popen(
        [_executable(executable), "send", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    seen: list[str] = []
    for _ in range(max_lines):
        line = process.stdout.readline()
        if not line:
            break
        seen.append(line.rstrip())
        match = _CODE.match(line.strip())
        if match:
            return SendSession(match.group(1), process)
    process.terminate()
    process.wait()
    raise RemoteCommandError("runpodctl send printed no one-time code: " + " | ".join(seen)[-300:])


def receive(
    code: str, dest_dir: Path, *, executable: str | None = None, timeout_s: float | None = None
) -> None:
    """Receive what a ``send`` with ``code`` offers, into ``dest_dir``."""
    if not _CODE.match(code):
        raise ValueError(f"not a runpodctl code: {code!r} (expected e.g. 8338-galileo-collect-fidel)")
    dest_dir.mkdir(parents=True, exist_ok=True)
    try:
        result = subprocess.run(
            [_executable(executable), "receive", code],
            cwd=dest_dir,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise RemoteCommandError(f"runpodctl receive {code} did not finish within {timeout_s:g} s.") from exc
    if result.returncode != 0:
        raise RemoteCommandError(
            f"runpodctl receive failed (exit {result.returncode}): {result.stderr.strip()[-300:]}",
            exit_code=result.returncode,
            stderr=result.stderr,
        )
