"""Parsing ``--env KEY=VALUE`` options (shared by every command that takes them)."""

from __future__ import annotations

from collections.abc import Sequence

from .errors import ConfigError


def parse_env(items: Sequence[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--env takes KEY=VALUE, got {item!r}.")
        env[key] = value
    return env
