"""SavedModel runtime: the only module in the server that imports TensorFlow."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from functools import partial
from pathlib import Path

import numpy as np
import tensorflow as tf

from service.errors import ModelLoadError
from service.runtime.base import PredictFn, SignatureSpec, TensorSpec
from service.runtime.devices import worker_gpu_index

log = logging.getLogger(__name__)


def configure_threads(intra_op: int, inter_op: int) -> None:
    """Size TensorFlow's thread pools (0 keeps TF's default of one thread per core).

    TensorFlow's own configuration is the only state: a call asking for what is already set does
    nothing. NOTE: must run before TensorFlow executes its first op (i.e. before the first model
    loads); later calls with other values are logged and ignored, since TF cannot resize its pools.
    """
    threading = tf.config.threading
    current = (threading.get_intra_op_parallelism_threads(), threading.get_inter_op_parallelism_threads())
    wanted = (intra_op, inter_op)
    if current == wanted:
        return
    try:
        threading.set_intra_op_parallelism_threads(intra_op)
        threading.set_inter_op_parallelism_threads(inter_op)
    except RuntimeError as exc:  # TF already started its pools: they keep their size
        log.warning("TensorFlow threads already set to %s; ignoring %s (%s)", current, wanted, exc)


def configure_gpus(worker_index: int | None = None, memory_limit_mib: int = 0, config=None) -> list[str]:
    """Set up the GPUs this process uses; return their logical device names.

    One process (worker_index None) uses every visible GPU. Worker i of several uses only GPU
    i mod n (made the only visible one, so it is "/GPU:0" in this process). Each GPU used gets
    a hard memory limit of `memory_limit_mib`, or memory growth when it is 0 (a GPU that already
    has growth is left alone, so repeated calls are harmless). `config` is tf.config (tests pass
    a fake). TensorFlow's own configuration is the only state.
    NOTE: must run before TensorFlow initialises the GPUs, i.e. before the first model loads.
    """
    config = tf.config if config is None else config
    gpus = config.list_physical_devices("GPU")
    if worker_index is not None and gpus:
        gpus = [gpus[worker_gpu_index(worker_index, len(gpus))]]
        try:
            config.set_visible_devices(gpus, "GPU")
            log.info("worker %d uses %s", worker_index, gpus[0].name)
        except RuntimeError as exc:  # already initialised: visibility can no longer change
            log.warning("could not restrict worker %d to %s: %s", worker_index, gpus[0].name, exc)
    for gpu in gpus:
        try:
            if memory_limit_mib:
                limit = [config.LogicalDeviceConfiguration(memory_limit=memory_limit_mib)]
                config.set_logical_device_configuration(gpu, limit)
            elif not config.experimental.get_memory_growth(gpu):
                config.experimental.set_memory_growth(gpu, True)
        except RuntimeError as exc:  # already initialised: memory settings can no longer change
            log.warning("could not set memory limits on %s: %s", gpu.name, exc)
    return [f"/GPU:{i}" for i in range(len(gpus))]


class SavedModelBackend:
    """Runs SavedModel signatures by calling their concrete functions directly (no model.predict).

    `devices` lists where to place a copy of the model ("/GPU:0", "/GPU:1", ...); with several,
    `worker_predict_fns()` gives one callable per device so the batcher runs one batch worker per
    GPU. An empty list lets TensorFlow place ops (CPU nodes). predict() is thread-safe.
    """

    variant = "savedmodel"

    def __init__(self, path: Path, devices: list[str] | None = None) -> None:
        self.path = path
        self.devices = list(devices or [])
        self._replicas: list[tuple[str, dict[str, object], object]] = []  # (device, functions, loaded)
        self._signatures: dict[str, SignatureSpec] = {}
        self._next = 0

    @property
    def signatures(self) -> Mapping[str, SignatureSpec]:
        return self._signatures

    def load(self) -> None:
        """Load one copy per device and read every signature. Raises ModelLoadError."""
        for device in self.devices or [""]:
            try:
                with tf.device(device):
                    loaded = tf.saved_model.load(str(self.path))
                functions = dict(loaded.signatures)
            except Exception as exc:  # TF raises many types for corrupt models
                raise ModelLoadError(f"{self.path}: cannot load SavedModel: {_first_line(exc)}") from exc
            if not functions:
                raise ModelLoadError(f"{self.path}: SavedModel has no signatures")
            self._replicas.append((device, functions, loaded))
        self._signatures = {name: _signature_spec(name, fn) for name, fn in self._replicas[0][1].items()}

    def predict(self, signature: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run `signature` on a batch (round-robin over devices); returns every output as an ndarray."""
        self._next = (self._next + 1) % len(self._replicas)
        return self._run(self._next, signature, inputs)

    def worker_predict_fns(self, signature: str) -> list[PredictFn]:
        """One predict callable per device copy, for one batch worker per device."""
        return [partial(self._run, index, signature) for index in range(len(self._replicas))]

    def _run(self, replica: int, signature: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        device, functions, _ = self._replicas[replica]
        with tf.device(device):
            outputs = functions[signature](**{name: tf.constant(value) for name, value in inputs.items()})
        return {name: tensor.numpy() for name, tensor in outputs.items()}

    def unload(self) -> None:
        self._replicas = []


def _signature_spec(name: str, fn) -> SignatureSpec:
    _args, kwargs = fn.structured_input_signature
    inputs = {key: _tensor_spec(key, spec) for key, spec in kwargs.items()}
    outputs = {key: _tensor_spec(key, spec) for key, spec in fn.structured_outputs.items()}
    return SignatureSpec(name=name, inputs=inputs, outputs=outputs)


def _tensor_spec(name: str, spec) -> TensorSpec:
    dtype = np.dtype(object) if spec.dtype == tf.string else np.dtype(spec.dtype.as_numpy_dtype)
    shape = None if spec.shape.rank is None else tuple(spec.shape.as_list())
    return TensorSpec(name=name, dtype=dtype, shape=shape)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
