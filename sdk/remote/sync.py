"""A sync loop: keep a dir on a pod in step with a local one while you edit (``rph sync --watch``).

The first pass is an ordinary upload (rsync moves only what differs). Then ``watchfiles`` (the file watcher
uvicorn and others use, on inotify) reports saves; changes to ignored files (``.gitignore``/``.rphignore``,
``--exclude``) are not worth a pass, and a burst of saves becomes one pass after a short quiet period.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from runpod_hybrid.errors import LocalPathError

from .ignore import IgnoreRules
from .runner import CommandRunner, TransferResult

SyncCallback = Callable[[TransferResult, Sequence[str]], None]


def sync_tree(
    runner: CommandRunner,
    local: Path,
    remote: str,
    *,
    watch: bool = False,
    delete: bool = False,
    exclude: tuple[str, ...] = (),
    on_sync: SyncCallback | None = None,
    stop: threading.Event | None = None,
    quiet_ms: int = 300,
) -> TransferResult:
    """Upload ``local`` to ``remote`` on the pod, then, with ``watch``, again after every burst of changes
    until ``stop`` is set (or Ctrl-C). ``on_sync`` gets each pass's result and the changed paths (relative;
    none for the first pass). ``delete`` removes files on the pod that are gone locally. Returns the last
    pass's result."""
    local = Path(local)
    if not local.is_dir():
        raise LocalPathError(f"Nothing to sync: {local} is not a directory.")
    if not watch:
        result = runner.upload(local, remote, exclude=exclude, delete=delete)
        if on_sync:
            on_sync(result, ())
        return result
    from watchfiles import watch as changes_of

    root = local.resolve()
    # The watcher is armed before the first pass (its first, empty, answer says so), so a save made during
    # that pass is not lost: it brings a second pass.
    batches = changes_of(
        root,
        debounce=quiet_ms,
        stop_event=stop,
        raise_interrupt=False,
        yield_on_timeout=True,
        rust_timeout=quiet_ms,
    )
    if next(batches, None) is None:  # stopped before it began
        return runner.upload(local, remote, exclude=exclude, delete=delete)
    result = runner.upload(local, remote, exclude=exclude, delete=delete)
    if on_sync:
        on_sync(result, ())
    for batch in batches:
        rules = IgnoreRules(root, exclude)  # read afresh: an ignore file may be what changed
        changed = sorted(
            rel
            for _change, path in batch
            if not rules.ignored(rel := Path(path).relative_to(root).as_posix(), is_dir=Path(path).is_dir())
        )
        if changed:
            result = runner.upload(local, remote, exclude=exclude, delete=delete)
            if on_sync:
                on_sync(result, changed)
    return result
