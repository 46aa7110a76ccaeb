"""Logging for the SDK and its entry points, and the one place that decides what is secret.

Libraries log, applications configure. SDK modules log structured events through :func:`get_logger`:
structlog's API over the standard library logger of the module, with secrets redacted. They never configure
anything, so a program using the SDK gets Python's usual behaviour (warnings and errors on stderr, the rest
silent) or whatever logging it set up itself. (structlog's own unconfigured default prints every event,
debug included, to the program's *stdout*.) The entry points (``rph``, ``rph-mcp``, the worker) call
:func:`configure_logging`, which renders every record, ours and other libraries', with structlog: JSON or
console text, on stderr, redacted.

Redaction: API keys, Authorization values, tokens and pod env. Logs, error messages, CLI output, MCP results
and cassettes all scrub the same things. The key itself is registered when it is resolved
(``register_secret``), so even a key of an unknown shape is caught; key-like patterns catch the rest.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
from collections.abc import Mapping, MutableMapping
from typing import Any, TextIO

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


LEVELS = ("debug", "info", "warning", "error")
_OURS = "_rph_handler"  # marks the handler configure_logging installs, so a second call replaces it


def get_logger(name: str) -> Any:
    """A structlog logger over the standard library logger ``name``: events carry their fields, pass the
    redaction processor, and cost nothing below the level the application enabled."""
    import structlog

    return structlog.wrap_logger(
        logging.getLogger(name),
        processors=[
            structlog.stdlib.filter_by_level,
            redact_processor,
            structlog.stdlib.render_to_log_kwargs,
        ],
        wrapper_class=structlog.stdlib.BoundLogger,
    )


def redact_processor(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Drop keys, tokens, Authorization values and pod env from every log event."""
    redacted = redact_value(dict(event_dict))
    assert isinstance(redacted, dict)
    return redacted


def configure_logging(
    level: str | None = None, *, json_output: bool | None = None, stream: TextIO | None = None
) -> None:
    """For entry points: render every log record of this process with structlog, on ``stream``.

    ``level`` falls back to ``RPH_LOG_LEVEL``, then ``warning``. Output goes to ``stream`` (stderr by default:
    stdout is data for the CLI and the protocol channel for the MCP server). ``json_output`` None means JSON
    unless the stream is a terminal. Calling it again replaces the earlier set-up.
    """
    name = (level or os.environ.get("RPH_LOG_LEVEL") or "warning").lower()
    if name not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}, got {name!r}")
    out = stream or sys.stderr
    if json_output is None:
        json_output = not out.isatty()
    import structlog  # here, not at import: `rph --help` and config reads stay light

    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json_output
        else structlog.dev.ConsoleRenderer(colors=out.isatty())
    )
    before: list[Any] = [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                redact_processor,
                renderer,
            ],
            # Records from get_logger (fields in `extra`) and from other libraries' plain loggers.
            foreign_pre_chain=[structlog.stdlib.ExtraAdder(), *before],
        )
    )
    setattr(handler, _OURS, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _OURS, False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, name.upper()))
    # structlog's own loggers (structlog.get_logger) go the same way.
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            structlog.contextvars.merge_contextvars,
            *before,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
