"""The one place where shell text for a pod (or this machine's ``sh``) is put together.

Nothing that comes from a user or a pod (paths, file names, env values, job arguments) ever becomes shell
code: it enters a command line only as one quoted word, through these three functions. Our own shell text
(operators, redirections, loops) is a template written in this package; values are filled into it quoted.
"""

from __future__ import annotations

import re
import shlex

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def words(*args: str) -> str:
    """A command of ``args``, each one word: ``words("rm", "-rf", "--", path)``."""
    return shlex.join(args)


def script(template: str, /, **values: str | int) -> str:
    """``template`` (shell text of ours) with each ``{name}`` replaced by ``values[name]`` as exactly one
    quoted word. Braces the shell itself needs are doubled (``${{HOME}}``)."""
    return template.format_map({name: shlex.quote(str(value)) for name, value in values.items()})


def assignment(name: str, value: str) -> str:
    """``NAME='value'`` for a variable; a name that is not a shell identifier is refused, as it would be
    shell code."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"invalid environment variable name {name!r}: use letters, digits and '_'")
    return f"{name}={shlex.quote(value)}"
