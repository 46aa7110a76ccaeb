"""Child processes that cannot outlive their parent (Linux ``PR_SET_PDEATHSIG``; elsewhere a no-op)."""

from __future__ import annotations

import ctypes
import signal
import sys

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """In a child, before exec or right after fork: have Linux kill it when its parent dies. The signal comes
    when the parent *thread* that forked it exits, so call it only for children forked by a main thread."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
