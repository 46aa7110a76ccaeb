"""The runpodctl adapter against a stand-in executable.

runpodctl cannot be installed here (its installer fetches a binary from GitHub, which this machine cannot
reach), so a small script named `runpodctl` on PATH plays it: it checks the exact argv it gets and prints
runpodctl's documented output format (runpodctl README: "Sending 'data.txt' (5 B)" / "Code is: ...")."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

from runpod_hybrid.errors import ConfigError, RemoteCommandError
from runpod_hybrid.runpodctl import receive, send

CODE = "8338-galileo-collect-fidel"
STANDIN = f"""#!{sys.executable}
import os, sys, time
args = sys.argv[1:]
log = os.environ["RPH_STANDIN_LOG"]
open(log, "a").write(repr(args) + "\\n")
if args[:1] == ["send"] and len(args) == 2:
    name = os.path.basename(args[1])
    print(f"Sending '{{name}}' (5 B)", flush=True)
    print("Code is: {CODE}", flush=True)
    print("On the other computer run\\n\\nrunpodctl receive {CODE}", flush=True)
    # Blocks until a receiver connects; the test plays the receiver by creating this flag.
    flag = os.environ["RPH_STANDIN_FLAG"]
    while not os.path.exists(flag):
        time.sleep(0.01)
    sys.exit(0)
if args == ["receive", "{CODE}"]:
    open("data.txt", "w").write("hello")
    print("Receiving 'data.txt' (5 B)")
    sys.exit(0)
print("unexpected argv", args, file=sys.stderr)
sys.exit(2)
"""


@pytest.fixture
def standin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "runpodctl"
    exe.write_text(STANDIN)
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("RPH_STANDIN_LOG", str(tmp_path / "argv.log"))
    monkeypatch.setenv("RPH_STANDIN_FLAG", str(tmp_path / "receiver-connected"))
    return tmp_path


def test_send_returns_the_code_while_runpodctl_blocks(standin: Path) -> None:
    data = standin / "data.txt"
    data.write_text("hello")
    session = send(data)
    assert session.code == CODE
    assert session.process.poll() is None  # still waiting for the receiver
    (standin / "receiver-connected").touch()
    session.wait(timeout_s=10)
    assert (standin / "argv.log").read_text().splitlines() == [repr(["send", str(data)])]


def test_receive_runs_in_the_destination(standin: Path) -> None:
    receive(CODE, standin / "dest")
    assert (standin / "dest" / "data.txt").read_text() == "hello"
    assert (standin / "argv.log").read_text().splitlines() == [repr(["receive", CODE])]


def test_codes_that_could_be_options_are_refused(standin: Path) -> None:
    with pytest.raises(ValueError, match="not a runpodctl code"):
        receive("--help", standin)
    assert not (standin / "argv.log").exists()


def test_failed_receive_is_an_error(standin: Path) -> None:
    with pytest.raises(RemoteCommandError, match="exit 2"):
        receive("1234-wrong-code", standin / "dest")


def test_missing_runpodctl_says_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigError, match=r"cli\.runpod\.io"):
        receive(CODE, tmp_path)
