"""Which files of a work dir to upload: ``.gitignore`` and ``.rphignore`` rules (the common gitignore
syntax: ``*``, ``?``, ``[...]``, ``**``, a leading ``/`` anchors, a trailing ``/`` matches directories only,
``!`` re-includes), read in every directory, plus ``.git/`` always."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

IGNORE_FILES = (".gitignore", ".rphignore")
ALWAYS_EXCLUDED = (".git",)


@dataclass(frozen=True)
class _Rule:
    regex: re.Pattern[str]
    negated: bool
    dir_only: bool
    base: str  # directory (relative, "" for the root) whose ignore file holds the rule


def _translate(pattern: str) -> str:
    """gitignore glob to a regex over a '/'-separated path relative to the rule's base."""
    anchored = "/" in pattern.rstrip("/")
    pattern = pattern.strip("/")
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("/**", i) and i + 3 == len(pattern):
            out += "/.*"
            i += 3
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        elif pattern[i] == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                out += re.escape("[")
                i += 1
            else:
                body = pattern[i + 1 : end].replace("\\", "\\\\")
                out += "[" + ("^" + body[1:] if body.startswith("!") else body) + "]"
                i = end + 1
        elif pattern[i] == "\\" and i + 1 < len(pattern):
            out += re.escape(pattern[i + 1])
            i += 2
        else:
            out += re.escape(pattern[i])
            i += 1
    return ("^" if anchored else "^(?:.*/)?") + out + "$"


def _read_rules(directory: Path, base: str) -> list[_Rule]:
    rules: list[_Rule] = []
    for name in IGNORE_FILES:
        try:
            lines = (directory / name).read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            continue
        for raw in lines:
            line = raw.rstrip()
            if not line or line.startswith("#"):
                continue
            negated = line.startswith("!")
            line = line[1:] if negated else line
            if line.startswith("\\"):
                line = line[1:]
            rules.append(_Rule(re.compile(_translate(line)), negated, line.endswith("/"), base))
    return rules


def _ignored(rel: str, is_dir: bool, rules: list[_Rule]) -> bool:
    verdict = False
    for rule in rules:
        if rule.dir_only and not is_dir:
            continue
        if rule.base:
            if not rel.startswith(rule.base + "/"):
                continue
            local = rel[len(rule.base) + 1 :]
        else:
            local = rel
        if rule.regex.match(local):
            verdict = not rule.negated
    return verdict


def walk_included(root: Path, extra_excludes: tuple[str, ...] = ()) -> tuple[list[str], list[str]]:
    """Return ``(included, excluded)`` relative paths under ``root``. A directory that is excluded is listed
    once in ``excluded`` and not entered; its contents are neither included nor listed."""
    included: list[str] = []
    excluded: list[str] = []
    extra = [_Rule(re.compile(_translate(p)), False, p.endswith("/"), "") for p in extra_excludes]
    stack: list[tuple[Path, str, list[_Rule]]] = [(root, "", extra + _read_rules(root, ""))]
    while stack:
        directory, rel_dir, rules = stack.pop()
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            is_dir = entry.is_dir(follow_symlinks=False)
            if (entry.name in ALWAYS_EXCLUDED and is_dir) or _ignored(rel, is_dir, rules):
                excluded.append(rel)
                continue
            included.append(rel)
            if is_dir:
                stack.append((Path(entry.path), rel, rules + _read_rules(Path(entry.path), rel)))
    return included, excluded
