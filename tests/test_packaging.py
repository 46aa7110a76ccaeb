"""Import hygiene: the packages import fast and without heavy dependencies."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("runpod", "mcp", "requests", "urllib3", "structlog", "tenacity", "graphql")


def modules_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_import_runpod_hybrid_pulls_in_nothing_heavy() -> None:
    loaded = modules_after("import runpod_hybrid")
    assert not {m for m in loaded if m.split(".")[0] in HEAVY}


def test_cli_help_imports_nothing_heavy() -> None:
    loaded = modules_after("from runpod_hybrid import cli; cli.build_parser().format_help()")
    assert not {m for m in loaded if m.split(".")[0] in HEAVY}


def test_all_three_packages_import() -> None:
    loaded = modules_after("import runpod_hybrid, runpod_hybrid_mcp, runpod_hybrid_worker")
    assert {"runpod_hybrid", "runpod_hybrid_mcp", "runpod_hybrid_worker"} <= loaded
    assert "runpod" not in loaded and "mcp" not in loaded
