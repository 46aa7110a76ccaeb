"""A batch task: embed texts with the hashing trick (numpy). Many small inputs: a serverless-shaped job."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from runpod_hybrid import task

DIM = 256


@task
def embed(text: str) -> dict[str, Any]:
    vector = np.zeros(DIM)
    for token in text.lower().split():
        digest = int.from_bytes(hashlib.sha256(token.encode()).digest()[:8], "big")
        vector[digest % DIM] += 1.0 if (digest >> 32) & 1 else -1.0
    norm = float(np.linalg.norm(vector))
    if norm:
        vector /= norm
    return {
        "text": text,
        "tokens": len(text.split()),
        "sha256": hashlib.sha256(text.encode()).hexdigest()[:16],
        "buckets": [int(i) for i in np.flatnonzero(vector)[:6]],
        "dim": DIM,
    }
