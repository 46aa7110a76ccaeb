"""The architecture, kept by reading the code: sub-packages depend one way, the adapters (cli/, mcp_server/)
use only the public API, and the library never prints."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SDK = ROOT / "sdk"

# Lower ranks may be used by higher ones, never the reverse (the README's layout, top to bottom).
RANK = {
    "core": 0,  # config, errors, _http, _logging: every package may use them
    "controlplane": 1,
    "pods": 2,
    "remote": 2,
    "serverless": 2,
    "jobs": 3,
    "client": 4,
    "cli": 5,
}
CORE = {"config", "errors", "_http", "_logging"}


def package_of(module: str, name: str = "") -> str:
    """``runpod_hybrid.pods.gpus`` -> ``pods``; core modules -> ``core``. The package itself re-exports
    the facade (``client``), except for its version string."""
    parts = module.split(".")
    if len(parts) == 1:
        return "core" if name == "__version__" else "client"
    return "core" if parts[1] in CORE else parts[1]


def imports_of(path: Path) -> Iterator[tuple[int, str, str]]:
    """(line, imported module, imported name) of every import in a file, relative ones resolved."""
    relative_to = (
        "runpod_hybrid" + "".join("." + p for p in path.relative_to(SDK).with_suffix("").parts[:-1])
        if path.is_relative_to(SDK)
        else ""
    )
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, ""
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = relative_to.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, module]) if module else ".".join(base)
            for alias in node.names:
                yield node.lineno, module, alias.name


def sdk_files() -> list[Path]:
    return sorted(p for p in SDK.rglob("*.py"))


@pytest.mark.parametrize("path", sdk_files(), ids=lambda p: str(p.relative_to(SDK)))
def test_sub_packages_depend_one_way(path: Path) -> None:
    own = package_of(
        "runpod_hybrid."
        + ".".join(path.relative_to(SDK).with_suffix("").parts)
        .removesuffix(".__init__")
        .removesuffix("__init__")
    )
    for line, module, name in imports_of(path):
        if module.startswith("runpod_hybrid.") or module == "runpod_hybrid":
            used = package_of(module, name)
            if used in RANK and own in RANK:
                assert RANK[used] <= RANK[own] or used == own, f"{path}:{line}: {own} must not use {used}"


ADAPTERS = sorted([*(SDK / "cli").glob("*.py"), *(ROOT / "mcp_server").glob("*.py")])


@pytest.mark.parametrize("path", ADAPTERS, ids=lambda p: str(p.relative_to(ROOT)))
def test_adapters_use_only_the_public_api(path: Path) -> None:
    """cli/ and mcp_server/ import the SDK only as ``runpod_hybrid`` or one of its public packages and
    modules (no ``_private`` module or name, nothing deeper than a package), and talk no HTTP themselves."""
    for line, module, name in imports_of(path):
        assert not module.startswith(("requests", "urllib3", "http.client")), f"{path}:{line}: {module}"
        if not module.startswith("runpod_hybrid") or module.startswith(
            ("runpod_hybrid_mcp", "runpod_hybrid.cli")
        ):
            continue
        parts = module.split(".")
        assert len(parts) <= 2, f"{path}:{line}: {module} is deeper than a public package"
        assert not any(p.startswith("_") for p in parts), f"{path}:{line}: private module {module}"
        assert not name.startswith("_") or name == "__version__", f"{path}:{line}: private name {name}"


def test_the_check_catches_an_adapter_reaching_inside(tmp_path: Path) -> None:
    leaky = tmp_path / "leaky.py"
    leaky.write_text(
        "from runpod_hybrid.jobs.runner import DetachedJobs\nfrom runpod_hybrid._http import X\n"
    )
    found = [m for _line, m, _n in imports_of(leaky)]
    assert found == ["runpod_hybrid.jobs.runner", "runpod_hybrid._http"]
    with pytest.raises(AssertionError, match="deeper than a public package"):
        test_adapters_use_only_the_public_api(leaky)


def _prints(tree: ast.AST) -> list[int]:
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id == "print":
                lines.append(node.lineno)
            if (
                isinstance(func, ast.Attribute)
                and func.attr == "write"
                and isinstance(func.value, ast.Attribute)
                and func.value.attr in ("stdout", "stderr")
            ):
                lines.append(node.lineno)
    return lines


@pytest.mark.parametrize("path", [p for p in sdk_files() if "cli" not in p.relative_to(SDK).parts], ids=str)
def test_the_library_never_prints(path: Path) -> None:
    """Only cli/ prints; the library reports through return values, callbacks and logs."""
    assert _prints(ast.parse(path.read_text())) == [], path


def test_the_library_configures_no_logging_on_its_own() -> None:
    """Only configure_logging (called by entry points) configures structlog or the logging root."""
    for path in sdk_files():
        if "cli" in path.relative_to(SDK).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("configure", "basicConfig", "configure_once")
            ):
                assert path.name == "_logging.py", f"{path}:{node.lineno} configures logging"
