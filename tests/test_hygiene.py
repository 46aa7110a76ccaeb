"""The suite's own guards fire: a leftover process is found, a vcr test without its cassette is caught."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import CASSETTES, _processes, cassette_file, leftover_processes


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_process_left_behind_is_found(tmp_path: Path) -> None:
    before = set(_processes())
    marker = str(tmp_path / "marker-dir")
    # One orphan-like process naming our temp dir (its own session, as sshd and detached jobs run), one child.
    named = subprocess.Popen(["sh", "-c", f"sleep 60 # {marker}"], start_new_session=True)
    child = subprocess.Popen(["sleep", "60"])
    try:
        found = leftover_processes(before, (marker,))
        assert named.pid in found and child.pid in found
    finally:
        for process in (named, child):
            process.kill()
            process.wait()
    assert not ({named.pid, child.pid} & set(leftover_processes(before, (marker,))))


def test_a_vcr_test_without_its_cassette_is_caught(tmp_path: Path) -> None:
    """A vcr test that makes no request and has no cassette would pass silently: the guard fails it."""
    assert cassette_file(str(CASSETTES / "graphql"), "test_query_returns_data").exists()
    test_file = tmp_path / "test_unrecorded.py"
    test_file.write_text(
        "import pytest\n\n\n@pytest.mark.vcr\ndef test_never_recorded() -> None:\n    pass\n"
    )
    run = subprocess.run(
        [sys.executable, "-m", "pytest", str(test_file), "-p", "conftest", "-p", "no:cacheprovider", "-q"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent)},
        timeout=120,
        check=False,
    )
    assert run.returncode == 1, run.stdout + run.stderr
    assert "is a vcr test without its cassette" in run.stdout
