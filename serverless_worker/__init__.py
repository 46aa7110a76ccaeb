"""runpod-hybrid's serverless worker: runs ``@task`` functions inside a RunPod Serverless worker.

The handler module imports without network and without ``runpod``; only the entry point imports ``runpod``.
"""

from __future__ import annotations
