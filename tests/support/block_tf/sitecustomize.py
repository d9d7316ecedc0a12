"""With BATCHWISE_BLOCK_TENSORFLOW=1, make `import tensorflow` (and keras) fail in this interpreter.

Put this folder on PYTHONPATH (see tests.support.blocked_tf_env): Python imports `sitecustomize`
at start-up, and this one installs a meta-path finder that raises ImportError for
tensorflow, tensorflow.*, keras and keras.*. It shadows any distribution sitecustomize, which
only matters for these test subprocesses.
"""

from __future__ import annotations

import os
import sys

BLOCKED_ROOTS = ("tensorflow", "keras")


class BlockTensorFlowFinder:
    """A sys.meta_path finder that refuses the blocked packages before any other finder looks."""

    @staticmethod
    def find_spec(fullname: str, path=None, target=None):
        if fullname.split(".", 1)[0] in BLOCKED_ROOTS:
            raise ImportError(f"{fullname} is blocked by BATCHWISE_BLOCK_TENSORFLOW=1", name=fullname)
        return None  # noqa: PLR1711 - the finder protocol: None means "not mine, ask the next finder"


if os.environ.get("BATCHWISE_BLOCK_TENSORFLOW") == "1":
    sys.meta_path.insert(0, BlockTensorFlowFinder())
