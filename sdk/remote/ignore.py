"""Which files of a work dir to upload: ``.gitignore`` and ``.rphignore`` rules, read in every directory
and matched by ``pathspec`` with git's own semantics (``*``, ``?``, ``[...]``, ``**``, a leading or inner
``/`` anchors, a trailing ``/`` matches directories only, ``!`` re-includes), plus ``.git/`` always.

As in git, a deeper ignore file overrides a shallower one, the last matching line wins within a file, and
nothing inside an excluded directory can be re-included.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

import pathspec

IGNORE_FILES = (".gitignore", ".rphignore")
ALWAYS_EXCLUDED = (".git",)


class IgnoreRules:
    """The ignore rules of one tree. ``extra_excludes`` are gitignore patterns relative to the root that
    exclude whatever the ignore files say (``--exclude``). Ignore files are read once per directory."""

    def __init__(self, root: Path, extra_excludes: tuple[str, ...] = ()) -> None:
        self.root = root
        self._extra = pathspec.GitIgnoreSpec.from_lines(extra_excludes)
        self._specs: dict[str, pathspec.GitIgnoreSpec | None] = {}

    def _spec(self, rel_dir: str) -> pathspec.GitIgnoreSpec | None:
        if rel_dir not in self._specs:
            lines: list[str] = []
            for name in IGNORE_FILES:
                try:
                    lines += (
                        (self.root / rel_dir / name)
                        .read_text(encoding="utf-8", errors="replace")
                        .splitlines()
                    )
                except OSError:
                    continue
            self._specs[rel_dir] = pathspec.GitIgnoreSpec.from_lines(lines) if lines else None
        return self._specs[rel_dir]

    def _matches(self, rel: str, is_dir: bool) -> bool:
        """Whether ``rel`` itself is excluded (its directories assumed included)."""
        name = PurePosixPath(rel).name
        target = rel + "/" if is_dir else rel
        if (is_dir and name in ALWAYS_EXCLUDED) or self._extra.check_file(target).include:
            return True
        parents = [str(p) for p in PurePosixPath(rel).parents][:-1]  # "a/b", "a" (not ".")
        for base in [*parents, ""]:  # the deepest ignore file that has a say wins
            spec = self._spec(base)
            if spec is not None:
                verdict = spec.check_file(target[len(base) + 1 :] if base else target).include
                if verdict is not None:
                    return verdict
        return False

    def ignored(self, rel: str, *, is_dir: bool = False) -> bool:
        """Whether ``rel`` (relative to the root, '/'-separated) is left out, itself or through a directory
        above it."""
        parts = PurePosixPath(rel).parts
        for depth in range(1, len(parts)):
            if self._matches("/".join(parts[:depth]), True):
                return True
        return self._matches(rel, is_dir)


def walk_included(root: Path, extra_excludes: tuple[str, ...] = ()) -> tuple[list[str], list[str]]:
    """Return ``(included, excluded)`` relative paths under ``root``. A directory that is excluded is listed
    once in ``excluded`` and not entered; its contents are neither included nor listed."""
    rules = IgnoreRules(root, extra_excludes)
    included: list[str] = []
    excluded: list[str] = []
    stack: list[tuple[Path, str]] = [(root, "")]
    while stack:
        directory, rel_dir = stack.pop()
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            is_dir = entry.is_dir(follow_symlinks=False)
            if rules._matches(rel, is_dir):  # its directories were checked on the way down
                excluded.append(rel)
                continue
            included.append(rel)
            if is_dir:
                stack.append((Path(entry.path), rel))
    return included, excluded
