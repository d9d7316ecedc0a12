"""What this node can run: is TensorFlow installed, is a GPU visible. Never imports TF on a node without a GPU.

A GPU is looked for in the kernel driver's files first (/dev/nvidia<N>, /proc/driver/nvidia/gpus):
no NVIDIA device there means no GPU TensorFlow could use, so a CPU node never pays TensorFlow's
import (seconds and ~600 MiB) just to learn that it has no GPU, even where TensorFlow is installed.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import re
from pathlib import Path

log = logging.getLogger(__name__)
DEV_ROOT = Path("/dev")
NVIDIA_PROC_GPUS = Path("/proc/driver/nvidia/gpus")
_NVIDIA_DEVICE = re.compile(r"nvidia\d+")


def is_tensorflow_available() -> bool:
    """True when `import tensorflow` can be found, without importing it.

    A finder that refuses tensorflow (e.g. a sys.meta_path blocker) counts as "not installed".
    """
    try:
        return importlib.util.find_spec("tensorflow") is not None
    except (ImportError, ValueError):
        return False


def nvidia_devices_present(dev_root: Path = DEV_ROOT, proc_gpus: Path = NVIDIA_PROC_GPUS) -> bool:
    """True when the NVIDIA kernel driver exposes a GPU to this process (a /dev/nvidia<N> node or a
    /proc/driver/nvidia/gpus entry). Reads a directory listing; imports nothing.

    In a container only the GPUs the runtime mounted appear, so this follows the device plugin.
    """
    for root, match in ((dev_root, _NVIDIA_DEVICE.fullmatch), (proc_gpus, bool)):
        try:
            if any(match(entry.name) for entry in root.iterdir()):
                return True
        except OSError:
            continue
    return False


@functools.cache
def gpu_visible() -> bool:
    """True when a GPU device is present and TensorFlow (installed) sees it. Cached for the process.

    Imports TensorFlow (seconds) only when the driver shows a GPU and TensorFlow is installed; a
    node without either answers False at once (it could not serve SavedModels on a GPU anyway).
    """
    if not is_tensorflow_available() or not nvidia_devices_present():
        return False
    try:
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
    except Exception as exc:  # a broken CUDA install must not stop a CPU node
        log.warning("could not list GPUs through TensorFlow: %s", exc)
        return False
    return bool(gpus)


def worker_gpu_index(worker_index: int, gpu_count: int) -> int:
    """The GPU worker `worker_index` (0-based) runs on: i mod n, so workers spread evenly over the GPUs.

    Raises ValueError when there is no GPU to assign.
    """
    if gpu_count < 1:
        raise ValueError("no GPU to assign a worker to")
    return worker_index % gpu_count
