"""Commands and files over a real OpenSSH sshd on loopback (tests/sshd_pod.py)."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from runpod_hybrid.errors import (
    HostKeyChangedError,
    RemoteCommandError,
    SshConnectionError,
    UnsafeArchiveError,
)
from runpod_hybrid.jobs import DetachedJobs, DetachedJobSpec
from runpod_hybrid.remote import SshRunner, extract_safely, forget_host_key

from conftest import eventually
from sshd_pod import SshdPod


@pytest.fixture(scope="module")
def pod(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshdPod]:
    sshd = SshdPod(tmp_path_factory.mktemp("pod")).setup()
    (sshd.base / "rp_environment").write_text("export RUNPOD_GPU_COUNT=2\n")
    (sshd.base / "proc1_environ").write_bytes(
        b'RUNPOD_POD_ID=pod-abc123\0WEIRD=it\'s "quoted" $HOME `x`\0HOME=/nothome\0MULTI=line1\nline2\0'
    )
    yield sshd
    sshd.stop()


@pytest.fixture
def runner(pod: SshdPod) -> Iterator[SshRunner]:
    runner = pod.runner()
    yield runner
    runner.close()


def tree_digest(root: Path) -> dict[str, str]:
    """Every entry under root: files by content hash, links by target, dirs as dirs."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                out[rel] = "link:" + os.readlink(path)
            elif path.is_dir():
                out[rel] = "dir"
            else:
                out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def make_tree(root: Path, files: int = 2000, pad_bytes: int = 16) -> None:
    for i in range(files):
        sub = root / f"d{i % 20:02d}" / ("ünïcødé" if i % 7 == 0 else "plain")
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"file {i}.txt").write_bytes(os.urandom(pad_bytes) + str(i).encode() * (i % 50))
    (root / "empty" / "nested").mkdir(parents=True)
    (root / "link-to-d00").symlink_to("d00")
    (root / "d01" / "rel-link.txt").symlink_to("plain/file 1.txt")
    (root / "weird [name] *?.txt").write_text("wildcards in a name")
    (root / ".gitignore").write_text("*.log\nbuild/\n")
    (root / "app.log").write_text("ignored")
    (root / "build").mkdir()
    (root / "build" / "out.bin").write_text("ignored")
    (root / ".rphignore").write_text("secret.env\n")
    (root / "secret.env").write_text("TOKEN=x")


# --- exec ------------------------------------------------------------------------------------------------


def test_exit_codes_stdout_and_stderr(runner: SshRunner) -> None:
    result = runner.exec(["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (result.exit_code, result.stdout, result.stderr) == (3, "out\n", "err\n")
    with pytest.raises(Exception, match="exited 3"):
        result.check()


def test_argv_cannot_inject_shell(runner: SshRunner, pod: SshdPod) -> None:
    marker = pod.base / "injected"
    result = runner.exec(["echo", f"hello; touch {marker}", "$(id)", "`id`", "'quoted'"])
    assert result.stdout == f"hello; touch {marker} $(id) `id` 'quoted'\n"
    assert not marker.exists()


def test_container_env_and_user_env_reach_the_command(runner: SshRunner) -> None:
    result = runner.exec(
        'printf \'%s|%s|%s|%s|%s|%s\' "$RUNPOD_POD_ID" "$RUNPOD_GPU_COUNT" "$WEIRD" '
        '"$MY_VAR" "$MULTI" "$HOME"',
        env={"MY_VAR": "a b;c'd"},
    )
    pod_id, gpus, weird, mine, multi, home = result.stdout.split("|")
    assert (pod_id, gpus, weird, mine, multi) == (
        "pod-abc123",
        "2",
        'it\'s "quoted" $HOME `x`',
        "a b;c'd",
        "line1",
    )
    assert home != "/nothome"  # session variables are not overridden by PID 1's


def test_cwd(runner: SshRunner, pod: SshdPod) -> None:
    assert runner.exec(["pwd"], cwd=str(pod.workspace)).stdout.strip() == str(pod.workspace)
    missing = runner.exec(["pwd"], cwd=str(pod.workspace / "nope"))
    assert missing.exit_code == 125


def test_streams_50mb_with_bounded_capture(runner: SshRunner) -> None:
    seen = {"stdout": 0, "stderr": 0}

    def on_output(stream: str, chunk: bytes) -> None:
        seen[stream] += len(chunk)

    result = runner.exec("head -c 52428800 /dev/zero | tr '\\0' 'x'; echo done >&2", on_output=on_output)
    assert result.exit_code == 0
    assert seen["stdout"] == 50 * 1024 * 1024
    assert result.stdout_truncated and len(result.stdout) == runner.max_capture_bytes
    assert result.stderr == "done\n" and not result.stderr_truncated


def test_timeout_kills_the_remote_process(runner: SshRunner, pod: SshdPod) -> None:
    pidfile = pod.base / "sleeper.pid"
    result = runner.exec(f"echo $$ > {pidfile}; sleep 30 & wait", timeout_s=1)
    assert result.timed_out and result.exit_code == 124
    pid = int(pidfile.read_text())
    alive = runner.exec(["sh", "-c", f"kill -0 {pid} 2>/dev/null && echo alive || echo gone"])
    assert alive.stdout.strip() == "gone"


def test_dropped_connection_is_reestablished(runner: SshRunner, pod: SshdPod) -> None:
    assert runner.exec(["true"]).exit_code == 0  # a master connection exists now
    pod.drop_connections()
    assert runner.exec(["echo", "back"]).stdout == "back\n"


def test_control_socket_dir_is_private(runner: SshRunner) -> None:
    runner.exec(["true"])
    options = runner.ssh_options()
    control = Path(options[options.index("ControlMaster=auto") + 2].split("=", 1)[1]).parent
    assert control.stat().st_mode & 0o777 == 0o700


def test_unreachable_pod_is_a_connection_error(pod: SshdPod, tmp_path: Path) -> None:
    closed = SshdPod(tmp_path)  # never started: nothing listens on its port
    runner = SshRunner(
        pod.runner().target.__class__("127.0.0.1", closed.port, "gone"),
        pod.client_key,
        tmp_path / "known_hosts",
        connect_timeout_s=5,
    )
    with pytest.raises(SshConnectionError, match="pod gone"):
        runner.exec(["true"])


def test_changed_host_key_is_refused_naming_the_pod(tmp_path: Path) -> None:
    sshd = SshdPod(tmp_path / "pod").setup()
    try:
        runner = sshd.runner(pod_id="keypod")
        assert runner.exec(["true"]).exit_code == 0
        sshd.stop()
        sshd.new_host_key()
        sshd.start()
        with pytest.raises(HostKeyChangedError, match="pod keypod") as info:
            runner.exec(["true"])
        assert "forget-host-key keypod" in str(info.value)
        assert forget_host_key(runner.known_hosts, "keypod")
        assert runner.exec(["echo", "ok"]).stdout == "ok\n"
    finally:
        sshd.stop()


# --- files -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rsync", [True, False], ids=["rsync", "tar"])
def test_round_trip_of_2000_files_is_byte_identical(pod: SshdPod, tmp_path: Path, rsync: bool) -> None:
    source = tmp_path / "src"
    make_tree(source)
    runner = pod.runner(local_rsync=rsync)
    remote = str(pod.workspace / f"tree-{rsync}")
    progress: list[tuple[int, int | None]] = []
    up = runner.upload(source, remote, on_progress=lambda done, total: progress.append((done, total)))
    assert up.method == ("rsync" if rsync else "tar")
    assert progress and progress[-1][0] > 0
    back = tmp_path / "back"
    down = runner.download(remote, back)
    assert down.files >= 2000
    expected = tree_digest(source)
    for ignored in ("app.log", "build", "build/out.bin", "secret.env"):
        del expected[ignored]
    assert tree_digest(back) == expected
    assert (back / "empty" / "nested").is_dir()
    assert os.readlink(back / "link-to-d00") == "d00"


@pytest.mark.parametrize("rsync", [True, False], ids=["rsync", "tar"])
def test_unchanged_reupload_moves_almost_nothing(pod: SshdPod, tmp_path: Path, rsync: bool) -> None:
    source = tmp_path / "src"
    make_tree(source, files=300, pad_bytes=4096)
    runner = pod.runner(local_rsync=rsync)
    remote = str(pod.workspace / f"incr-{rsync}")
    first = runner.upload(source, remote)
    again = runner.upload(source, remote)
    assert first.method == again.method == ("rsync" if rsync else "tar")
    assert again.bytes_sent < first.bytes_sent / 20
    (source / "d03" / "plain" / "new.txt").write_text("new")
    third = runner.upload(source, remote)
    assert (Path(remote) / "d03" / "plain" / "new.txt").read_text() == "new"
    assert third.bytes_sent < first.bytes_sent / 5


@pytest.mark.parametrize("rsync", [True, False], ids=["rsync", "tar"])
def test_upload_with_delete(pod: SshdPod, tmp_path: Path, rsync: bool) -> None:
    source = tmp_path / "src"
    (source / "keep").mkdir(parents=True)
    (source / "keep" / "a.txt").write_text("a")
    (source / "gone.txt").write_text("bye")
    runner = pod.runner(local_rsync=rsync)
    remote = Path(pod.workspace / f"del-{rsync}")
    runner.upload(source, str(remote))
    (source / "gone.txt").unlink()
    runner.upload(source, str(remote))
    assert (remote / "gone.txt").exists()  # delete=False keeps it
    runner.upload(source, str(remote), delete=True)
    assert not (remote / "gone.txt").exists() and (remote / "keep" / "a.txt").read_text() == "a"


def test_single_file_upload_and_download(runner: SshRunner, pod: SshdPod, tmp_path: Path) -> None:
    source = tmp_path / "model.bin"
    source.write_bytes(os.urandom(5000))
    runner.upload(source, str(pod.workspace / "files" / "model.bin"))
    runner.download(str(pod.workspace / "files" / "model.bin"), tmp_path / "copy.bin")
    assert (tmp_path / "copy.bin").read_bytes() == source.read_bytes()


def test_download_of_a_missing_path(runner: SshRunner, tmp_path: Path) -> None:
    with pytest.raises(Exception, match="no such file"):
        runner.download("/definitely/not/here", tmp_path / "x")
    assert not (tmp_path / "x").exists()


def hostile_tar(kind: str) -> io.BytesIO:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        ok = tarfile.TarInfo("fine.txt")
        ok.size = 2
        archive.addfile(ok, io.BytesIO(b"ok"))
        evil = tarfile.TarInfo(
            {
                "traversal": "../escaped.txt",
                "absolute": "/tmp/rph-absolute-escape.txt",
                "symlink": "out",
                "device": "dev",
            }[kind]
        )
        if kind == "symlink":
            evil.type, evil.linkname = tarfile.SYMTYPE, "/etc"
        elif kind == "device":
            evil.type, evil.devmajor, evil.devminor = tarfile.CHRTYPE, 1, 3
        else:
            evil.size = 4
        archive.addfile(evil, io.BytesIO(b"evil") if evil.isfile() else None)
        if kind == "symlink":
            through = tarfile.TarInfo("out/passwd-copy")
            through.size = 4
            archive.addfile(through, io.BytesIO(b"evil"))
    buffer.seek(0)
    return buffer


def test_absolute_member_lands_inside_the_target(tmp_path: Path) -> None:
    """tarfile's data filter strips the leading '/': the file is written under the target, never at /tmp."""
    target = tmp_path / "target"
    extract_safely(hostile_tar("absolute"), target)
    assert (target / "tmp" / "rph-absolute-escape.txt").read_bytes() == b"evil"
    assert not Path("/tmp/rph-absolute-escape.txt").exists()


@pytest.mark.parametrize("kind", ["traversal", "symlink", "device"])
def test_hostile_tarball_is_blocked(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "inside" / "target"
    with pytest.raises(UnsafeArchiveError, match="Nothing was written"):
        extract_safely(hostile_tar(kind), target)
    assert not target.exists()
    assert not (tmp_path / "inside" / "escaped.txt").exists()
    assert sorted(p.name for p in (tmp_path / "inside").iterdir()) == []  # staging cleaned up


def test_hostile_pod_cannot_write_outside_through_download(
    runner: SshRunner, pod: SshdPod, tmp_path: Path
) -> None:
    """A pod that ships a tree with an outward symlink: the link is refused, nothing lands."""
    evil = pod.workspace / "evil"
    evil.mkdir()
    (evil / "escape").symlink_to("/etc")
    with pytest.raises(UnsafeArchiveError):
        runner.download(str(evil), tmp_path / "dl")
    assert not (tmp_path / "dl").exists()


def test_output_is_exact_and_streamed(runner: SshRunner) -> None:
    result = runner.exec("printf 'a\\nb'; printf 'no newline' >&2; exit 3")
    assert (result.exit_code, result.stdout, result.stderr) == (3, "a\nb", "no newline")
    chunks: list[tuple[str, bytes]] = []
    big = runner.exec(
        "head -c 300000 /dev/zero | tr '\\0' x; echo; echo done >&2",
        on_output=lambda name, chunk: chunks.append((name, chunk)),
    )
    assert big.stdout == "x" * 300000 + "\n" and big.stderr == "done\n"
    assert b"".join(c for n, c in chunks if n == "stdout").decode() == big.stdout
    assert b"".join(c for n, c in chunks if n == "stderr") == b"done\n"


def test_commands_from_several_threads_all_run(runner: SshRunner) -> None:
    results: dict[int, str] = {}

    def run(index: int) -> None:
        results[index] = runner.exec(["echo", f"thread {index}"]).stdout

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {i: f"thread {i}\n" for i in range(4)}


@pytest.mark.parametrize("rsync", [True, False], ids=["rsync", "tar"])
def test_an_edit_of_the_same_size_within_the_second_is_uploaded(
    pod: SshdPod, tmp_path: Path, rsync: bool
) -> None:
    """A save right after an upload, same size, same second: rsync's default quick check would skip it."""
    source = tmp_path / "src"
    source.mkdir()
    (source / "train.py").write_text("lr = 0.1")
    runner = pod.runner(local_rsync=rsync)
    remote = pod.workspace / f"same-size-{rsync}"
    runner.upload(source, str(remote))
    (source / "train.py").write_text("lr = 0.2")
    runner.upload(source, str(remote))
    assert (remote / "train.py").read_text() == "lr = 0.2"


# --- nothing from a user or a pod becomes shell code --------------------------------------------------------

HOSTILE_NAMES = [
    "it's",
    "$(touch {marker})",
    "`touch {marker}`",
    "'; touch {marker}; echo '",
    "new\nline",
    "trailing newline\n",
    "-rf",
    "--delete",
    "sp a ce",
    'dq"uote',
]


def hostile(marker: Path) -> list[str]:
    """The names, each one path component: the marker's slashes are spelled for printf (\\057)."""
    touchable = "$(printf '" + str(marker).replace("/", "\\057") + "')"
    return [name.format(marker=touchable) for name in HOSTILE_NAMES]


@pytest.mark.parametrize("rsync", [True, False], ids=["rsync", "tar"])
def test_hostile_names_run_nothing_and_arrive_intact(pod: SshdPod, tmp_path: Path, rsync: bool) -> None:
    marker = tmp_path / "pwned"
    names = hostile(marker)
    source = tmp_path / "src"
    for index, name in enumerate(names):
        (source / name).mkdir(parents=True)  # a dir with a hostile name, holding a file with one
        (source / name / name).write_text(f"content {index}")
        (source / f"{name}.txt").write_text(name)
    runner = pod.runner(local_rsync=rsync)
    remote = pod.workspace / f"hostile {rsync} '$(touch {marker})'"
    runner.upload(source, str(remote))
    assert tree_digest(remote) == tree_digest(source)
    for index, name in enumerate(names):
        assert runner.exec(["cat", "--", str(remote / name / name)]).stdout == f"content {index}"
        copy = tmp_path / "down" / f"{index}.txt"
        runner.download(str(remote / f"{name}.txt"), copy)
        assert copy.read_text() == name
        runner.upload(source / f"{name}.txt", str(remote / "single" / f"{name}.txt"))  # one file up
        assert (remote / "single" / f"{name}.txt").read_text() == name
    runner.download(str(remote), tmp_path / "tree")
    assert tree_digest(tmp_path / "tree") == tree_digest(remote)
    with pytest.raises(RemoteCommandError, match="no such file"):
        runner.download(f"/nonexistent'; touch {marker}; echo '", tmp_path / "never")
    assert runner.exec(["echo", *names]).stdout == " ".join(names) + "\n"
    assert runner.exec(["pwd"], cwd=str(remote / names[1])).stdout == f"{remote / names[1]}\n"
    assert runner.exec('printf %s "$X"', env={"X": names[3]}).stdout == names[3]
    assert not marker.exists()


def test_hostile_names_cannot_reach_the_shell_through_a_job(pod: SshdPod, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    names = hostile(marker)
    root = pod.workspace / f"jobs '$(touch {marker})' `touch {marker}`"
    work = root / f"work {names[3]}"
    work.mkdir(parents=True)
    jobs = DetachedJobs(pod.runner(), str(root))
    command = [
        "sh",
        "-c",
        'mkdir -p out && printf "%s|" "$@" > out/args.txt && printf %s "$V" > out/env.txt',
        "sh",
    ]
    spec = DetachedJobSpec("hostile", [*command, *names], str(work), outputs=("out",), env={"V": names[2]})
    jobs.start(spec)
    final = eventually(lambda: (s := jobs.status("hostile")).finished and s)
    assert final.state == "SUCCEEDED", jobs.logs("hostile")
    fetched = {p.name: p.read_text() for p in jobs.fetch("hostile", ["out"], str(work), tmp_path / "outputs")}
    assert fetched == {"args.txt": "|".join(names) + "|", "env.txt": names[2]}
    with pytest.raises(ValueError, match="invalid environment variable name"):
        DetachedJobs(pod.runner(), str(root)).start(
            DetachedJobSpec("badenv", ["true"], str(work), env={f"X;touch {marker}": "1"})
        )
    assert not marker.exists()
