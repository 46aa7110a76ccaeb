from __future__ import annotations

import io
import json

import pytest
import structlog

from runpod_hybrid._logging import REDACTED, configure_logging, redact_text, redact_value
from runpod_hybrid.config import ApiKey

from conftest import SENTINEL_KEY


def test_log_lines_never_hold_keys_tokens_or_env() -> None:
    ApiKey(SENTINEL_KEY, "test")  # registering, as resolving a key does
    stream = io.StringIO()
    configure_logging("debug", json_output=True, stream=stream)
    log = structlog.get_logger("t")
    log.info("request", headers={"Authorization": f"Bearer {SENTINEL_KEY}"}, api_key=SENTINEL_KEY)
    log.info(f"message with {SENTINEL_KEY} inside", token="tok_abcdefghijkl")
    log.info("create", variables={"input": {"env": [{"key": "HF_TOKEN", "value": "hf_supersecret"}]}})
    log.info("pod", pod={"env": ["WANDB_API_KEY=wandb_secret_value"]})
    try:
        raise RuntimeError(f"failed with key {SENTINEL_KEY}")
    except RuntimeError:
        log.exception("boom")
    text = stream.getvalue()
    for secret in (SENTINEL_KEY, "tok_abcdefghijkl", "hf_supersecret", "wandb_secret_value"):
        assert secret not in text
    events = [json.loads(line) for line in text.splitlines()]
    assert len(events) == 5
    assert events[2]["variables"]["input"]["env"] == [{"key": "HF_TOKEN", "value": REDACTED}]
    assert events[3]["pod"]["env"] == [f"WANDB_API_KEY={REDACTED}"]
    assert "RuntimeError" in events[4]["exception"]


def test_level_filters_and_env_default(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setenv("RPH_LOG_LEVEL", "error")
    configure_logging(json_output=True, stream=stream)
    structlog.get_logger().warning("hidden")
    structlog.get_logger().error("shown")
    assert [json.loads(line)["event"] for line in stream.getvalue().splitlines()] == ["shown"]
    with pytest.raises(ValueError, match="log level"):
        configure_logging("loud", stream=stream)


def test_console_renderer_when_asked_for_text() -> None:
    stream = io.StringIO()
    configure_logging("info", json_output=False, stream=stream)
    structlog.get_logger().info("hello", n=1)
    line = stream.getvalue()
    assert "hello" in line and "n=1" in line
    with pytest.raises(ValueError):
        json.loads(line)


def test_redact_text_catches_unregistered_key_shapes() -> None:
    text = "Authorization: Bearer abcdefghijklmnop and rpa_ABCDEFGHIJKLMNOPQRSTUV and api_key=zzzzzzzzzz"
    out = redact_text(text)
    assert (
        "abcdefghijklmnop" not in out and "rpa_ABCDEFGHIJKLMNOPQRSTUV" not in out and "zzzzzzzzzz" not in out
    )
    assert redact_value({"apiKey": "x" * 10, "name": "ok"}) == {"apiKey": REDACTED, "name": "ok"}
