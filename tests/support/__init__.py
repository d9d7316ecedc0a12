"""Shared helpers for the test suite."""

from __future__ import annotations

import os
from pathlib import Path

BLOCK_TF_DIR = Path(__file__).resolve().parent / "block_tf"


def blocked_tf_env() -> dict[str, str]:
    """os.environ plus what makes a child Python refuse to import tensorflow and keras.

    PYTHONPATH gains tests/support/block_tf (whose sitecustomize installs the blocker) and the
    repository root (so `python -m service...` works from any cwd).
    """
    root = str(BLOCK_TF_DIR.parents[2])
    paths = [str(BLOCK_TF_DIR), root, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "BATCHWISE_BLOCK_TENSORFLOW": "1", "PYTHONPATH": os.pathsep.join(paths)}
