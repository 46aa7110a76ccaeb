"""No cassette may hold a key, an Authorization value other than the scrubbed marker, or pod env values."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from runpod_hybrid._logging import REDACTED

from conftest import CASSETTES, SCRUBBED_AUTH, SENTINEL_KEY

CASSETTE_FILES = sorted(CASSETTES.rglob("*.yaml"))
KEY_LIKE = re.compile(r"rpa_[A-Za-z0-9]{16,}|\b[A-Z0-9]{32,}\b")


def test_cassettes_exist_under_module_folders() -> None:
    assert len(CASSETTE_FILES) >= 10
    assert all(path.parent.parent == CASSETTES for path in CASSETTE_FILES)
    assert (CASSETTES / "README.md").exists()


def _env_values(value: Any) -> list[str]:
    """All env values found anywhere in a parsed body, in either of RunPod's shapes."""
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "env" and isinstance(item, dict):  # REST v2: a map of name to value
                found += [str(v) for v in item.values()]
            elif key == "env" and isinstance(item, list):
                for entry in item:
                    if isinstance(entry, str):
                        found.append(entry.partition("=")[2])
                    elif isinstance(entry, dict):
                        found.append(str(entry.get("value")))
            else:
                found += _env_values(item)
    elif isinstance(value, list):
        for item in value:
            found += _env_values(item)
    return found


def _bodies(interaction: dict[str, Any]) -> list[str]:
    request_body = interaction["request"].get("body") or ""
    response_body = interaction["response"].get("body", {}).get("string") or ""
    return [b.decode() if isinstance(b, bytes) else str(b) for b in (request_body, response_body)]


@pytest.mark.parametrize("path", CASSETTE_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_cassette_holds_no_secret(path: Path) -> None:
    text = path.read_text()
    assert SENTINEL_KEY not in text
    assert not KEY_LIKE.search(text), KEY_LIKE.search(text)
    cassette = yaml.safe_load(text)
    for interaction in cassette["interactions"]:
        headers = {k.lower(): v for k, v in interaction["request"]["headers"].items()}
        assert headers.get("authorization") == [SCRUBBED_AUTH]
        for body in _bodies(interaction):
            try:
                parsed = json.loads(body)
            except ValueError:
                continue
            assert all(value == REDACTED for value in _env_values(parsed))


def test_guard_catches_a_leaky_cassette(tmp_path: Path) -> None:
    """The guard's own checks fire on a cassette that leaks (so a passing guard means something)."""
    leaky = {
        "env": ["HF_TOKEN=hf_abc"],
        "input": {"env": [{"key": "A", "value": "secret"}]},
        "pod": {"env": {"B": "x"}},
    }
    assert _env_values(leaky) == ["hf_abc", "secret", "x"]
    assert KEY_LIKE.search(f"Bearer {SENTINEL_KEY}")
