"""``python -m runpod_hybrid.cli``: the same as ``rph``."""

from __future__ import annotations

import sys

from . import main

sys.exit(main())
