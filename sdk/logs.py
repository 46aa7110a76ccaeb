"""Logging set-up for entry points (``rph``, ``rph-mcp``, the worker). Library modules only call
``structlog.get_logger()``; applications configure. Every event passes the redaction processor."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

from .redact import redact_value

LEVELS = ("debug", "info", "warning", "error")


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
    """Configure structlog once for a process.

    ``level`` falls back to ``RPH_LOG_LEVEL``, then ``warning``. Output goes to ``stream`` (stderr by default:
    stdout is data for the CLI and the protocol channel for the MCP server). ``json_output`` None means JSON
    unless the stream is a terminal.
    """
    name = (level or os.environ.get("RPH_LOG_LEVEL") or "warning").lower()
    if name not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}, got {name!r}")
    out = stream or sys.stderr
    if json_output is None:
        json_output = not out.isatty()
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json_output
        else structlog.dev.ConsoleRenderer(colors=out.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact_processor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, name.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )


class _LibraryLogger:
    """What SDK modules log through. Entry points configure structlog; when nothing did (the SDK used as a
    library), the first event sets a quiet default (warnings and up, on stderr) instead of structlog's
    print-everything-to-stdout default."""

    def __init__(self, name: str) -> None:
        self._name = name

    def _emit(self, level: str, event: str, **fields: Any) -> None:
        if not structlog.is_configured():
            configure_logging("warning")
        getattr(structlog.get_logger(self._name), level)(event, **fields)

    def debug(self, event: str, **fields: Any) -> None:
        self._emit("debug", event, **fields)

    def info(self, event: str, **fields: Any) -> None:
        self._emit("info", event, **fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._emit("warning", event, **fields)

    def error(self, event: str, **fields: Any) -> None:
        self._emit("error", event, **fields)


def get_logger(name: str) -> _LibraryLogger:
    return _LibraryLogger(name)
