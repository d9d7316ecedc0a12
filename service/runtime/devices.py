"""What this node can run: is TensorFlow installed, is a GPU visible. Never imports TF unless it is installed."""

from __future__ import annotations

import functools
import importlib.util
import logging

log = logging.getLogger(__name__)


def is_tensorflow_available() -> bool:
    """True when `import tensorflow` can be found, without importing it.

    A finder that refuses tensorflow (e.g. a sys.meta_path blocker) counts as "not installed".
    """
    try:
        return importlib.util.find_spec("tensorflow") is not None
    except (ImportError, ValueError):
        return False


@functools.cache
def gpu_visible() -> bool:
    """True when TensorFlow is installed and sees at least one GPU. Cached for the process.

    Imports TensorFlow (seconds) the first time, and only if it is installed: a node without
    TensorFlow cannot serve SavedModels on a GPU anyway, so it answers False at once.
    """
    if not is_tensorflow_available():
        return False
    try:
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
    except Exception as exc:  # a broken CUDA install must not stop a CPU node
        log.warning("could not list GPUs through TensorFlow: %s", exc)
        return False
    return bool(gpus)
