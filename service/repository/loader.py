"""Builds the Backend for a model version: picks the variant, loads it, and applies the consistency guard.

The variant comes from settings (per model, else server-wide): `auto` serves the SavedModel
when a GPU is visible and the best published TFLite variant otherwise, falling back in order
when a candidate fails to load or disagrees with the model card's recorded outputs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from contract.card import ModelCard
from service.errors import ModelLoadError, ServingError
from service.repository.layout import VersionDir
from service.repository.variants import SAVEDMODEL, VersionFiles, check_consistency, choose_variants
from service.runtime.base import Backend
from service.runtime.devices import gpu_visible, is_tensorflow_available
from service.settings import Settings

log = logging.getLogger(__name__)
ClipCounter = Callable[[str, int, str, int], None]  # (model, version, input, values clipped), e.g. Metrics'


class ClippingReporter:
    """Where one version's TFLite backend reports inputs its int8 quantization clipped.

    Counts them in `counter` (if any) and logs a warning the first time it happens for the version.
    NOTE: called from batch worker threads; at worst two threads both log the first warning.
    """

    def __init__(self, model: str, version: int, variant: str, counter: ClipCounter | None) -> None:
        self.model, self.version, self.variant = model, version, variant
        self._counter = counter
        self.warned = False

    def __call__(self, input_name: str, count: int) -> None:
        if not self.warned:
            self.warned = True
            log.warning(
                "model %s version %s variant %s: %d value(s) of input %r are outside its int8 quantization range "
                "and were clipped; the inputs may have drifted from the calibration data "
                "(counted in batchwise_int8_clipped_input_values_total, logged once per version)",
                self.model, self.version, self.variant, count, input_name,
            )
        if self._counter is not None:
            self._counter(self.model, self.version, input_name, count)


class VariantLoader:
    """Callable backend factory for the ModelManager.

    `__call__(files, variant=None)` returns a loaded Backend; `variant` forces one variant
    (a per-request override). `worker_index` is this process's worker number when the server
    runs several workers. Raises ModelLoadError with every candidate's failure, or a
    ServingError (NotFound / FailedPrecondition) for a variant that cannot be served here.
    NOTE: blocking; runs on the manager's loader threads.
    """

    def __init__(
        self, settings: Settings, count_clipped: ClipCounter | None = None, worker_index: int | None = None
    ) -> None:
        self._settings = settings
        self._count_clipped = count_clipped
        self._worker_index = worker_index  # worker i of several uses GPU i mod n (see configure_gpus)

    def __call__(self, files: VersionFiles, variant: str | None = None) -> Backend:
        source, card, available = files.source, files.card, files.variants
        tf_available = is_tensorflow_available()
        requested = variant or self._settings.variant_for(source.model)
        runtime = self._settings.runtime
        want_gpu = runtime.device != "cpu" and requested in ("auto", SAVEDMODEL)
        candidates = choose_variants(
            requested, available, gpu_visible=want_gpu and tf_available and gpu_visible(),
            tf_available=tf_available, fallback_order=runtime.fallback_order,
        )
        failures = []
        for candidate in candidates:
            try:
                backend = self._load(source, candidate, available[candidate])
                if candidate != SAVEDMODEL:
                    self._guard(backend, card)
            except (ModelLoadError, ServingError) as exc:
                reason = getattr(exc, "message", str(exc))
                log.warning(
                    "model %s version %s: variant %s refused: %s", source.model, source.version, candidate, reason
                )
                failures.append(f"{candidate}: {reason}")
                continue
            log.info("model %s version %s serves variant %s", source.model, source.version, candidate)
            return backend
        raise ModelLoadError("no variant could be served; " + "; ".join(failures))

    def _load(self, source: VersionDir, variant: str, path: Path) -> Backend:
        if variant == SAVEDMODEL:
            from service.runtime.savedmodel import SavedModelBackend, configure_gpus, configure_threads

            configure_threads(self._settings.runtime.tf_intra_op_threads, self._settings.runtime.tf_inter_op_threads)
            device = self._settings.runtime.device
            memory_mib = self._settings.runtime.gpu_memory_limit_mib
            devices = configure_gpus(self._worker_index, memory_mib) if device != "cpu" else ["/CPU:0"]
            if device == "gpu" and not devices:
                raise ModelLoadError("runtime.device is 'gpu' but TensorFlow sees no GPU")
            backend: Backend = SavedModelBackend(path, devices)
        else:
            from service.runtime.tflite import TFLiteBackend

            runtime = self._settings.runtime
            backend = TFLiteBackend(
                path, variant=variant, num_threads=runtime.tflite_threads, pool_size=runtime.tflite_pool_size,
                allowed_batch_sizes=self._settings.batching_for(source.model).allowed_batch_sizes,
                on_clipped=ClippingReporter(source.model, source.version, variant, self._count_clipped),
            )
        backend.load()
        return backend

    def _guard(self, backend: Backend, card: ModelCard | None) -> None:
        runtime = self._settings.runtime
        try:
            check_consistency(
                backend, card, atol=runtime.consistency_atol, min_top1_agreement=runtime.min_top1_agreement
            )
        except Exception:
            backend.unload()
            raise
