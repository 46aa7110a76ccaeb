"""What an upload leaves out: .gitignore/.rphignore with git's own semantics (a table), through pathspec."""

from __future__ import annotations

from pathlib import Path

import pytest

from runpod_hybrid.remote import walk_included

TREE = (
    "app.log",
    "keep.log",
    "src/main.py",
    "src/cache/blob.bin",
    "src/deep/er/cache/x.bin",
    "build/out.o",
    "docs/build",
    "root.txt",
    "sub/root.txt",
    "a/b",
    "a/x/y/b",
    "data/raw/big.csv",
    "data/raw/keep.csv",
    "nested/.gitignore",
    "nested/local.tmp",
    "nested/inner/also.tmp",
    "nested/wanted.txt",
    ".git/HEAD",
)


def included(tmp_path: Path, rules: str, *, nested: str = "", extra: tuple[str, ...] = ()) -> set[str]:
    for rel in TREE:
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rel)
    (tmp_path / ".gitignore").write_text(rules)
    (tmp_path / "nested" / ".gitignore").write_text(nested)
    files, _ = walk_included(tmp_path, extra)
    return {f for f in files if (tmp_path / f).is_file()} - {".gitignore", "nested/.gitignore"}


ALL = set(TREE) - {"nested/.gitignore", ".git/HEAD"}


@pytest.mark.parametrize(
    ("rules", "nested", "left_out"),
    [
        # a plain glob matches at any depth; `!` re-includes
        ("*.log\n!keep.log\n", "", {"app.log"}),
        # the last matching line wins
        ("!keep.log\n*.log\n", "", {"app.log", "keep.log"}),
        # a trailing slash matches directories only: docs/build is a file and stays
        ("build/\n", "", {"build/out.o"}),
        # a leading slash anchors to the ignore file's dir
        ("/root.txt\n", "", {"root.txt"}),
        # a name with no slash matches in any dir
        ("root.txt\n", "", {"root.txt", "sub/root.txt"}),
        # `**/` matches any number of dirs, including none
        ("a/**/b\n", "", {"a/b", "a/x/y/b"}),
        ("**/cache/\n", "", {"src/cache/blob.bin", "src/deep/er/cache/x.bin"}),
        # an inner slash anchors too
        ("src/cache\n", "", {"src/cache/blob.bin"}),
        # nothing inside an excluded dir can be re-included (git does not descend into it)
        ("data/raw/\n!data/raw/keep.csv\n", "", {"data/raw/big.csv", "data/raw/keep.csv"}),
        # ...but excluding the contents, not the dir, lets a file back in
        ("data/raw/*\n!data/raw/keep.csv\n", "", {"data/raw/big.csv"}),
        # a nested ignore file applies below its dir, relative to it, and overrides the root's rules
        ("", "*.tmp\n", {"nested/local.tmp", "nested/inner/also.tmp"}),
        ("", "/*.tmp\n", {"nested/local.tmp"}),
        ("*.txt\n", "!wanted.txt\n", {"root.txt", "sub/root.txt"}),
    ],
)
def test_gitignore_semantics(tmp_path: Path, rules: str, nested: str, left_out: set[str]) -> None:
    assert included(tmp_path, rules, nested=nested) == ALL - left_out


def test_git_dir_is_never_uploaded_and_extra_excludes_win(tmp_path: Path) -> None:
    files = included(tmp_path, "!app.log\n", extra=("*.log", "src/"))
    assert ".git/HEAD" not in files
    assert files == ALL - {
        "app.log",
        "keep.log",
        "src/main.py",
        "src/cache/blob.bin",
        "src/deep/er/cache/x.bin",
    }


def test_excluded_dirs_are_listed_once_and_not_entered(tmp_path: Path) -> None:
    included(tmp_path, "src/\n")
    _, excluded = walk_included(tmp_path)
    assert "src" in excluded and not any(e.startswith("src/") for e in excluded)
    assert ".git" in excluded
