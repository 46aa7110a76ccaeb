"""runpod-hybrid: one job, two places to run it (RunPod Serverless or a GPU pod), plus a local backend.

Importing this package does nothing but define names: no network, no config reads, no logging setup, and no
heavy imports (``runpod``, ``mcp``, ``requests`` load only when a feature needs them).
"""

from __future__ import annotations

from .tasks import task

__version__ = "0.1.0"
__all__ = ["__version__", "task"]
