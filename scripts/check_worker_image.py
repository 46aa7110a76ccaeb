"""Check the serverless worker image's build steps without a container runtime.

    python scripts/check_worker_image.py

Reads serverless_worker/Dockerfile and its .dockerignore, lays out the files its COPY instructions would
put in the image (from the build context as the .dockerignore filters it) under a temporary root, runs its
RUN step (serverless_worker/install.sh) with a fresh virtual environment's python, then runs the image's
CMD in its WORKDIR the way RunPod's local test mode does: the bundled test_input.json must print the task's
real output and exit 0, and a failing input must exit 1. What this cannot check: the base image itself.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "serverless_worker" / "Dockerfile"
IGNORE = ROOT / "serverless_worker" / "Dockerfile.dockerignore"


def _pattern(line: str) -> tuple[re.Pattern[str], bool]:
    """One .dockerignore line as a regex over context-relative paths (Docker's rules: anchored at the
    root, Go's filepath.Match per segment, ``**`` any number of directories, ``!`` re-includes)."""
    keep = line.startswith("!")
    parts = line.lstrip("!").strip("/").split("/")
    regex = ""
    for part in parts:
        if part == "**":
            regex += "(?:[^/]+/)*"
        else:
            regex += (
                fnmatch.translate(part).removeprefix("(?s:").removesuffix(")\\Z").replace(".*", "[^/]*") + "/"
            )
    return re.compile(regex.rstrip("/") + r"\Z"), keep


def ignored(relative: str, patterns: list[tuple[re.Pattern[str], bool]]) -> bool:
    """Whether Docker leaves ``relative`` out of the context (a matched directory takes its contents)."""
    parts = relative.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for regex, keep in patterns:
        if any(regex.match(p) for p in prefixes):
            excluded = not keep
    return excluded


def context(patterns: list[tuple[re.Pattern[str], bool]], into: Path) -> Path:
    """A copy of the build context as Docker would send it."""
    for folder, dirs, files in os.walk(ROOT):
        rel_folder = Path(folder).relative_to(ROOT).as_posix()
        dirs[:] = [d for d in dirs if not ignored(f"{rel_folder}/{d}".lstrip("./"), patterns)]
        for name in files:
            relative = f"{rel_folder}/{name}".lstrip("./")
            if not ignored(relative, patterns):
                (into / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(Path(folder) / name, into / relative)
    return into


def copy(source: Path, stage: Path, dest: str) -> None:
    """COPY's rules: a directory's contents go into ``dest``; a file goes into ``dest/`` or becomes ``dest``."""
    target = stage / dest.lstrip("/")
    if source.is_dir():
        shutil.copytree(source, target, dirs_exist_ok=True)
    elif dest.endswith("/"):
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target / source.name)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


class Image:
    """The image's filesystem under a temporary root, built by following the Dockerfile."""

    def __init__(self, base: Path, ctx: Path) -> None:
        self.base, self.ctx = base, ctx
        self.root = base / "image"
        self.venv = base / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(self.venv)], check=True)
        self.env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        self.env.update(
            PATH=f"{self.venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
            HOME=str(base / "home"),
            PIP_QUIET="1",
        )
        self.args: dict[str, str] = {}
        self.stages: dict[str, Path] = {}
        self.stage = self.root
        self.workdir = self.root
        self.command: list[str] = []

    def follow(self, instruction: str, rest: str) -> None:
        if instruction == "FROM":
            named = re.search(r"\bAS (\S+)", rest)
            self.stage = self.base / f"stage-{named.group(1)}" if named else self.root
            self.stage.mkdir(parents=True, exist_ok=True)
            if named:
                self.stages[named.group(1)] = self.stage
        elif instruction == "ARG":
            name, _, default = rest.partition("=")
            self.args[name] = default
        elif instruction == "ENV":
            for pair in shlex.split(rest):
                name, _, value = pair.partition("=")
                self.env[name] = re.sub(r"\$\{(\w+)\}", lambda m: self.args.get(m.group(1), ""), value)
        elif instruction == "COPY":
            words = rest.split()
            origin = self.ctx
            if words[0].startswith("--from="):
                origin = self.stages[words.pop(0).removeprefix("--from=")]
            *sources, dest = words
            for source in sources:
                copy(origin / source.lstrip("/"), self.stage, dest)
        elif instruction == "RUN":
            mapped = [str(self.root / w.lstrip("/")) if w.startswith("/") else w for w in shlex.split(rest)]
            print("RUN", " ".join(mapped), flush=True)
            subprocess.run(mapped, env=self.env, check=True)
        elif instruction == "WORKDIR":
            self.workdir = self.root / rest.lstrip("/")
        elif instruction == "CMD":
            self.command = re.findall(r'"([^"]*)"', rest)

    def run(self, *extra: str) -> subprocess.CompletedProcess[str]:
        """The image's CMD (its python is the venv's), in its WORKDIR."""
        python = [str(self.venv / "bin" / "python"), *self.command[1:]]
        return subprocess.run(
            [*python, *extra],
            env=self.env,
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )


def main() -> int:
    patterns = [
        _pattern(line)
        for line in IGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    with tempfile.TemporaryDirectory(prefix="rph-image-") as tmp:
        base = Path(tmp)
        image = Image(base, context(patterns, base / "context"))
        for raw in re.sub(r"\\\n", " ", DOCKERFILE.read_text()).splitlines():
            line = raw.strip()
            if line and not line.startswith("#"):
                instruction, _, rest = line.partition(" ")
                image.follow(instruction, rest)
        print("CMD (RunPod's local test mode, test_input.json)", flush=True)
        ran = image.run()
        print(ran.stdout[-2000:], ran.stderr[-2000:], sep="\n")
        if ran.returncode != 0 or "'dim': 256" not in ran.stdout:
            print("FAILED: the image's test input did not print the task's output", file=sys.stderr)
            return 1
        failing = image.run("--test_input", '{"input": {"task": "no_such_task", "value": 1}}')
        if failing.returncode != 1 or "unknown task 'no_such_task'" not in failing.stdout:
            print(
                "FAILED: a failing test input must exit 1 naming the problem",
                failing.stdout[-2000:],
                file=sys.stderr,
            )
            return 1
    print("worker image steps ok: installed from the build context, test input ran, a failing one failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
