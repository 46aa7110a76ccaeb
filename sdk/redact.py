"""Keeping secrets out of text: API keys, Authorization values, tokens and pod env.

One place decides what is secret, so logs, error messages, CLI output, MCP results and cassettes all
scrub the same things. The key itself is registered when it is resolved (``register_secret``), so even a
key of an unknown shape is caught; key-like patterns catch the rest.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from typing import Any

REDACTED = "<redacted>"

# Mapping keys whose values are always secret (compared lower-case, without '_' and '-').
_SECRET_KEY_NAMES = frozenset(
    {"apikey", "authorization", "token", "accesstoken", "bearertoken", "password", "secret", "pass", "auth"}
)
# Keys holding container env: the values inside are user secrets (RunPod returns env as "KEY=value").
_ENV_KEY_NAMES = frozenset({"env", "environment"})

# RunPod keys: "rpa_" + 40-odd upper-case alphanumerics (current), or bare 32+ char upper-case ids (older).
_KEY_PATTERNS = (
    re.compile(r"\brpa_[A-Za-z0-9]{16,}\b"),
    re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"(?i)(api[_-]?key\s*[=:]\s*)[\"']?[^\s\"',;&]{8,}"),
)

_lock = threading.Lock()
_registered: set[str] = set()


def register_secret(value: str) -> None:
    """Remember a secret value so every later redaction removes it wherever it appears."""
    if len(value) >= 6:
        with _lock:
            _registered.add(value)


def redact_text(text: str) -> str:
    """Return ``text`` with registered secrets and key-like strings replaced."""
    with _lock:
        secrets = sorted(_registered, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    for pattern in _KEY_PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.re.groups else "") + REDACTED, text)
    return text


def _normal(key: str) -> str:
    return key.lower().replace("_", "").replace("-", "")


def redact_env(env: Any) -> Any:
    """Scrub env in both of RunPod's shapes: ``["KEY=value"]`` and ``[{"key", "value"}]`` (and plain dicts)."""
    if isinstance(env, list):
        out: list[Any] = []
        for item in env:
            if isinstance(item, str):
                name, sep, _ = item.partition("=")
                out.append(f"{name}={REDACTED}" if sep else REDACTED)
            elif isinstance(item, Mapping):
                out.append({k: (REDACTED if k == "value" else v) for k, v in item.items()})
            else:
                out.append(REDACTED)
        return out
    if isinstance(env, Mapping):
        return dict.fromkeys(env, REDACTED)
    return REDACTED if env else env


def redact_value(value: Any) -> Any:
    """Deep-copy ``value`` with secret mapping entries, pod env and key-like strings scrubbed."""
    if isinstance(value, Mapping):
        result: dict[Any, Any] = {}
        for key, item in value.items():
            name = _normal(str(key))
            if name in _SECRET_KEY_NAMES or name.endswith(("apikey", "token", "password", "secret")):
                result[key] = REDACTED if item else item
            elif name in _ENV_KEY_NAMES:
                result[key] = redact_env(item)
            else:
                result[key] = redact_value(item)
        return result
    if isinstance(value, list | tuple):
        return [redact_value(v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value
