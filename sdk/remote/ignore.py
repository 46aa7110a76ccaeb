"""Which files of a work dir to upload: ``.gitignore`` and ``.rphignore`` rules, read in every directory
and matched by ``pathspec`` with git's own semantics (``*``, ``?``, ``[...]``, ``**``, a leading or inner
``/`` anchors, a trailing ``/`` matches directories only, ``!`` re-includes), plus ``.git/`` always.

As in git, a deeper ignore file overrides a shallower one, the last matching line wins within a file, and
nothing inside an excluded directory can be re-included (the directory is not entered).
"""

from __future__ import annotations

import os
from pathlib import Path

import pathspec

IGNORE_FILES = (".gitignore", ".rphignore")
ALWAYS_EXCLUDED = (".git",)

# (base dir relative to the root, "" for the root; the rules of that dir's ignore files)
_Rules = tuple[str, pathspec.GitIgnoreSpec]


def _read_rules(directory: Path) -> pathspec.GitIgnoreSpec | None:
    lines: list[str] = []
    for name in IGNORE_FILES:
        try:
            lines += (directory / name).read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            continue
    return pathspec.GitIgnoreSpec.from_lines(lines) if lines else None


def _ignored(rel: str, is_dir: bool, rules: list[_Rules]) -> bool:
    """The verdict of the deepest rule set that matches ``rel`` at all."""
    for base, spec in reversed(rules):
        local = rel[len(base) + 1 :] if base else rel
        verdict = spec.check_file(local + "/" if is_dir else local).include
        if verdict is not None:
            return verdict
    return False


def walk_included(root: Path, extra_excludes: tuple[str, ...] = ()) -> tuple[list[str], list[str]]:
    """Return ``(included, excluded)`` relative paths under ``root``. A directory that is excluded is listed
    once in ``excluded`` and not entered; its contents are neither included nor listed. ``extra_excludes``
    are gitignore patterns relative to the root that exclude whatever the ignore files say."""
    extra = pathspec.GitIgnoreSpec.from_lines(extra_excludes)
    own = _read_rules(root)
    base_rules: list[_Rules] = [("", own)] if own is not None else []
    included: list[str] = []
    excluded: list[str] = []
    stack: list[tuple[Path, str, list[_Rules]]] = [(root, "", base_rules)]
    while stack:
        directory, rel_dir, rules = stack.pop()
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            is_dir = entry.is_dir(follow_symlinks=False)
            if (
                (is_dir and entry.name in ALWAYS_EXCLUDED)
                or extra.check_file(rel + "/" if is_dir else rel).include
                or _ignored(rel, is_dir, rules)
            ):
                excluded.append(rel)
                continue
            included.append(rel)
            if is_dir:
                nested = _read_rules(Path(entry.path))
                stack.append((Path(entry.path), rel, [*rules, (rel, nested)] if nested else rules))
    return included, excluded
