"""The interpreter pool under real concurrency: every threaded result equals the single-threaded one."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from service.runtime.tflite import TFLiteBackend
from tests.support.litert_models import build_litert_models

BATCH_SIZES = (1, 3, 8, 16, 5)


@pytest.mark.parametrize(("variant", "pool_size", "num_threads"), [("int8", 2, 2), ("float32", 1, 1), ("int8", 3, 1)])
def test_threads_hammering_predict_get_the_single_threaded_answers(variant, pool_size, num_threads):
    model = build_litert_models().digits
    backend = TFLiteBackend(model.tflite(variant), variant=variant, num_threads=num_threads, pool_size=pool_size)
    backend.load()
    batches = [model.x_test[i : i + size] for i, size in enumerate(BATCH_SIZES)]
    expected = [backend.predict("serving_default", {"pixels": batch})["probabilities"] for batch in batches]

    def hammer(worker: int) -> list[tuple[int, np.ndarray]]:
        order = np.random.default_rng(worker).integers(0, len(batches), size=40)
        return [(i, backend.predict("serving_default", {"pixels": batches[i]})["probabilities"]) for i in order]

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = [item for worker in pool.map(hammer, range(8)) for item in worker]
    assert len(results) == 8 * 40
    for index, out in results:
        np.testing.assert_array_equal(out, expected[index])
