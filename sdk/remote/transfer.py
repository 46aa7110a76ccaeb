"""Moving files to and from a pod over the runner's SSH connection.

- Uploads use rsync when both ends have it (only what changed moves; sizes and mtimes kept), else one tar
  stream, made incremental by a manifest of sizes and mtimes kept on the pod.
- Downloads always stream tar and extract with tarfile's ``data`` filter into a staging dir, so nothing the
  pod sends (``..``, absolute paths, outward links, devices) can land outside the target.
- Every remote path reaches the pod's shell as one quoted word (``shell.py``).
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import shutil
import subprocess
import tarfile
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING

from runpod_hybrid.errors import LocalPathError, RemoteCommandError, UnsafeArchiveError

from .ignore import walk_included
from .runner import PipeCapture, ProgressCallback, TransferResult
from .shell import script, words

if TYPE_CHECKING:
    from .ssh import SshRunner

_CHUNK = 1 << 16
_RSYNC_PROGRESS = re.compile(rb"^\s*([\d,]+)\s+\d+%")

# Whether a pod has rsync, asked once per host and port in this process.
_has_rsync: dict[tuple[str, int], bool] = {}
_has_rsync_lock = threading.Lock()


def _remote_rsync(runner: SshRunner) -> bool:
    key = (runner.target.host, runner.target.port)
    with _has_rsync_lock:
        known = _has_rsync.get(key)
    if known is None:
        known = runner.exec("command -v rsync >/dev/null 2>&1").exit_code == 0
        with _has_rsync_lock:
            _has_rsync[key] = known
    return known


def upload(
    runner: SshRunner,
    local_path: Path,
    remote_path: str,
    exclude: tuple[str, ...],
    delete: bool,
    on_progress: ProgressCallback | None,
) -> TransferResult:
    if not local_path.exists():
        raise LocalPathError(f"Nothing to upload: {local_path} does not exist.")
    started = time.monotonic()
    if local_path.is_dir():
        included, excluded = walk_included(local_path, exclude)
        total = sum((local_path / rel).lstat().st_size for rel in included)
    else:
        included, excluded = [local_path.name], []
        total = local_path.stat().st_size
    if runner.local_rsync and _remote_rsync(runner):
        sent = _rsync_upload(runner, local_path, remote_path, excluded, delete, total, on_progress)
        method = "rsync"
    else:
        sent = _tar_upload(runner, local_path, remote_path, included, delete, on_progress)
        method = "tar"
    return TransferResult(method, len(included), sent, round(time.monotonic() - started, 3))


def _rsync_literal(path: str) -> str:
    """An rsync exclude pattern matching exactly ``path`` (wildcard characters escaped)."""
    return re.sub(r"([*?\[\\])", r"\\\1", path)


def _rsync_upload(
    runner: SshRunner,
    local: Path,
    remote: str,
    excluded: list[str],
    delete: bool,
    total: int,
    on_progress: ProgressCallback | None,
) -> int:
    parent = remote if local.is_dir() else str(Path(remote).parent)
    with tempfile.NamedTemporaryFile("w", suffix=".rph-exclude", encoding="utf-8") as rules:
        rules.writelines(_rsync_literal("/" + rel) + "\n" for rel in excluded)
        rules.flush()
        source = f"{local}/" if local.is_dir() else str(local)
        argv = [
            "rsync",
            "-a",
            "--partial",
            "--stats",
            "--info=progress2",
            "--no-inc-recursive",
            # Compare mtimes to the nanosecond (rsync >= 3.1.3 on the pod): by default a file saved again
            # within the same second at the same size looks unchanged, and a sync loop would miss the edit.
            "--modify-window=-1",
            # The remote path is one argument to the remote rsync, never split or expanded by its shell.
            "--protect-args",
            "-e",
            words("ssh", *runner.ssh_options()),
            # The pod's shell runs this: the destination's parents are made in the same round trip.
            "--rsync-path=" + script("mkdir -p -- {parent} && rsync", parent=parent),
            f"--exclude-from={rules.name}",
        ]
        if delete:
            argv.append("--delete")
        argv += ["--", source, f"{runner.target.host}:{remote}"]
        return _run_rsync(runner, argv, total, on_progress)


def _run_rsync(
    runner: SshRunner, argv: list[str], total: int | None, on_progress: ProgressCallback | None
) -> int:
    def on_output(stream: str, chunk: bytes) -> None:
        if stream == "stdout" and on_progress:
            for line in re.split(rb"[\r\n]", chunk):
                match = _RSYNC_PROGRESS.match(line)
                if match:
                    on_progress(int(match.group(1).replace(b",", b"")), total)

    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    out = PipeCapture(process.stdout, "stdout", on_output, runner.max_capture_bytes)
    err = PipeCapture(process.stderr, "stderr", None, runner.max_capture_bytes)
    code = process.wait()
    stdout, stderr = out.text(), err.text()
    if code != 0:
        if code == 255 or "connection unexpectedly closed" in stderr:
            raise runner.connection_error(stderr)
        raise RemoteCommandError(
            f"rsync failed (exit {code}): {stderr.strip()[-500:]}", exit_code=code, stderr=stderr
        )
    match = re.search(r"Total bytes sent: ([\d,]+)", stdout)
    return int(match.group(1).replace(",", "")) if match else 0


def _manifest(root: Path, included: list[str]) -> dict[str, str]:
    """rel path -> "type<TAB>size<TAB>mtime_ns<TAB>mode[<TAB>link target]" for change detection."""
    entries: dict[str, str] = {}
    for rel in included:
        info = (root / rel).lstat()
        if os.path.islink(root / rel):
            entries[rel] = f"l\t0\t{info.st_mtime_ns}\t0\t{os.readlink(root / rel)}"
        elif (root / rel).is_dir():
            entries[rel] = f"d\t0\t0\t{info.st_mode & 0o7777}"
        else:
            entries[rel] = f"f\t{info.st_size}\t{info.st_mtime_ns}\t{info.st_mode & 0o7777}"
    return entries


def _tar_upload(
    runner: SshRunner,
    local: Path,
    remote: str,
    included: list[str],
    delete: bool,
    on_progress: ProgressCallback | None,
) -> int:
    """Send what changed since the last upload to ``remote`` (per the manifest kept on the pod)."""
    root = local if local.is_dir() else local.parent
    dest = remote if local.is_dir() else str(Path(remote).parent)
    entries = _manifest(root, included)
    # Names with a newline or tab cannot live in the line-based manifest: they are always sent.
    manifest = f"{hashlib.sha256(remote.encode()).hexdigest()[:16]}.tsv"
    old = runner.exec(
        script('cat "$HOME"/.cache/rph/uploads/{manifest} 2>/dev/null || true', manifest=manifest)
    ).stdout
    previous = dict(line.split("\t", 1) for line in old.splitlines() if "\t" in line)
    changed = [rel for rel, entry in entries.items() if previous.get(rel) != entry]
    gone = [rel for rel in previous if rel not in entries] if delete else []
    changed_total = sum(int(entries[rel].split("\t")[1]) for rel in changed)
    sent = _send_tar(runner, root, changed, dest, changed_total, on_progress) if changed else 0
    if gone:
        runner.exec(["rm", "-rf", "--", *(f"{dest}/{rel}" for rel in gone)]).check("removing deleted files")
    # Without delete, files gone locally stay on the pod: keep them in the manifest so a later upload with
    # delete=True still removes them.
    kept = {} if delete else {rel: entry for rel, entry in previous.items() if rel not in entries}
    lines = {**kept, **entries}.items()
    body = "".join(f"{rel}\t{entry}\n" for rel, entry in lines if "\n" not in rel and "\t" not in rel)
    runner.exec(
        script(
            'mkdir -p "$HOME"/.cache/rph/uploads && cat > "$HOME"/.cache/rph/uploads/{manifest}',
            manifest=manifest,
        ),
        stdin=body.encode(),
    ).check("saving the upload manifest")
    return sent


def _send_tar(
    runner: SshRunner,
    root: Path,
    members: list[str],
    dest: str,
    total: int,
    on_progress: ProgressCallback | None,
) -> int:
    """Stream ``members`` of ``root`` (``total`` bytes) as one tar into ``dest`` on the pod; returns the
    bytes sent."""
    sent = 0
    with tempfile.NamedTemporaryFile("wb", suffix=".rph-list") as listing:
        listing.write(b"\0".join(os.fsencode(rel) for rel in members) + b"\0")
        listing.flush()
        pack = subprocess.Popen(
            [
                "tar",
                "-C",
                str(root),
                "-cf",
                "-",
                "--no-recursion",
                "--null",
                "--verbatim-files-from",
                "-T",
                listing.name,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert pack.stdout is not None
        unpack = subprocess.Popen(
            runner.ssh_argv(script("mkdir -p -- {dest} && exec tar -C {dest} -xpf -", dest=dest)),
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        assert unpack.stdin is not None and unpack.stderr is not None
        unpack_err = PipeCapture(unpack.stderr, "stderr", None, runner.max_capture_bytes)
        try:
            while chunk := pack.stdout.read(_CHUNK):
                unpack.stdin.write(chunk)
                sent += len(chunk)
                if on_progress:
                    on_progress(min(sent, total), total)
            unpack.stdin.close()
        except BrokenPipeError:
            pack.kill()
        unpack.wait()
        pack_err = pack.stderr.read() if pack.stderr else b""
        if pack.wait() != 0 or unpack.returncode != 0:
            stderr = pack_err.decode(errors="replace") + unpack_err.text()
            if unpack.returncode == 255:
                raise runner.connection_error(stderr)
            raise RemoteCommandError(f"tar upload failed: {stderr.strip()[-500:]}", stderr=stderr)
    return sent


def download(
    runner: SshRunner, remote_path: str, local_path: Path, on_progress: ProgressCallback | None
) -> TransferResult:
    started = time.monotonic()
    # The parent and the name are split here, not by the pod's dirname/basename: a command substitution
    # would drop a name's trailing newlines. GNU tar (RunPod's images) would read backslash escapes in a
    # name given as an argument: --no-unquote keeps it as it is.
    remote = script(
        "if [ -d {path} ]; then printf 'D\\n'; exec tar -C {path} -cf - .; "
        "elif [ -e {path} ]; then printf 'F\\n'; exec tar -C {parent} --no-unquote -cf - -- {name}; "
        "else printf 'no such file or directory: %s\\n' {path} >&2; exit 2; fi",
        path=remote_path,
        parent=posixpath.dirname(remote_path) or ".",
        name=posixpath.basename(remote_path),
    )
    process = subprocess.Popen(runner.ssh_argv(remote), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    err = PipeCapture(process.stderr, "stderr", None, runner.max_capture_bytes)
    kind = process.stdout.readline().strip()
    counter = _CountingReader(process.stdout, on_progress)
    files = 0
    try:
        if kind in (b"D", b"F"):
            files = extract_safely(counter, local_path, single_file=kind == b"F")
    finally:
        process.stdout.close()
        code = process.wait()
    stderr = err.text()
    if code != 0 or kind not in (b"D", b"F") or (kind == b"F" and files != 1):
        if code == 255:
            raise runner.connection_error(stderr)
        raise RemoteCommandError(
            f"download of {remote_path} failed: {stderr.strip()[-500:]}", exit_code=code, stderr=stderr
        )
    return TransferResult("tar", files, counter.count, round(time.monotonic() - started, 3))


class _CountingReader:
    def __init__(self, raw: IO[bytes], on_progress: ProgressCallback | None) -> None:
        self._raw = raw
        self._on_progress = on_progress
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self.count += len(data)
        if self._on_progress and data:
            self._on_progress(self.count, None)
        return data


def extract_safely(stream: object, target: Path, *, single_file: bool = False) -> int:
    """Extract a tar stream into ``target`` through a staging dir beside it, with tarfile's ``data`` filter:
    absolute paths, ``..``, links pointing outside, and device files are refused before anything reaches
    ``target``. ``single_file`` means the archive holds one file (or link) that becomes ``target`` itself.
    Returns the files extracted (for ``single_file``: 1, or 0 when the archive held no single entry)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".rph-download-", dir=target.parent))
    try:
        files = 0
        try:
            with tarfile.open(fileobj=stream, mode="r|") as archive:  # type: ignore[call-overload]
                for member in archive:
                    archive.extract(member, staging, filter="data")
                    files += member.isfile()
        except (tarfile.FilterError, tarfile.ReadError) as exc:
            raise UnsafeArchiveError(
                f"Refused the download into {target}: {exc}. Nothing was written there.", stderr=str(exc)
            ) from exc
        if single_file:
            entries = list(staging.iterdir())
            if len(entries) != 1:  # the pod's tar failed; its exit code and stderr tell why
                return 0
            os.replace(entries[0], target)
            return 1
        else:
            _merge_into(staging, target)
        return files
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _merge_into(source: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for entry in source.iterdir():
        dest = target / entry.name
        if entry.is_dir() and not entry.is_symlink() and dest.is_dir() and not dest.is_symlink():
            _merge_into(entry, dest)
        else:
            if dest.is_dir() and not dest.is_symlink():
                shutil.rmtree(dest)
            os.replace(entry, dest)
