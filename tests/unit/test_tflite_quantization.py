"""int8 interfaces: the quantize/dequantize maths, and int8 variants agreeing with their SavedModel."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.runtime.tflite import TFLiteBackend, dequantize, quantize
from tests.support.litert_models import build_litert_models

scales = st.floats(min_value=1e-4, max_value=10.0, allow_nan=False)
zero_points = st.integers(min_value=-128, max_value=127)
values = st.lists(st.floats(min_value=-1e4, max_value=1e4, allow_nan=False, width=32), min_size=1, max_size=32)


@given(values, scales, zero_points)
def test_round_trip_error_is_at_most_half_a_step_inside_the_range(xs, scale, zero_point):
    x = np.array(xs, dtype=np.float32)
    q = quantize(x, scale, zero_point, np.dtype(np.int8))
    assert q.dtype == np.int8
    low, high = (-128 - zero_point) * scale, (127 - zero_point) * scale
    inside = (x >= low) & (x <= high)
    back = dequantize(q, scale, zero_point)
    assert back.dtype == np.float32
    np.testing.assert_array_less(np.abs(back - x)[inside], scale / 2 + 1e-3 * scale + 1e-6)
    assert (q[x < low] == -128).all() and (q[x > high] == 127).all()  # clipped, never wrapped


def test_rounds_half_away_from_zero_like_litert():
    q = quantize(np.array([0.5, 1.5, -0.5, -1.5, 2.4]), 1.0, 0, np.dtype(np.int8))
    np.testing.assert_array_equal(q, [1, 2, -1, -2, 2])


def test_uint8_uses_its_own_range():
    q = quantize(np.array([-5.0, 0.0, 1.0, 300.0]), 1.0, 128, np.dtype(np.uint8))
    np.testing.assert_array_equal(q, [123, 128, 129, 255])
    np.testing.assert_array_equal(dequantize(q, 1.0, 128), [-5.0, 0.0, 1.0, 127.0])


@pytest.mark.parametrize("model_name", ["iris", "digits"])
def test_int8_variant_agrees_with_the_savedmodel_on_the_test_split(model_name):
    model = getattr(build_litert_models(), model_name)
    backend = TFLiteBackend(model.tflite("int8"), variant="int8", num_threads=2, pool_size=1)
    backend.load()
    out = backend.predict("serving_default", {model.input_name: model.x_test})[model.output_name]
    assert out.dtype == np.float32 and out.shape == model.y_savedmodel.shape
    agreement = np.mean(out.argmax(1) == model.y_savedmodel.argmax(1))
    assert agreement >= 0.95, f"top-1 agreement {agreement:.3f}"
    # Probabilities come back on the output's 1/256 grid; the network's own int8 error adds a little.
    assert np.abs(out - model.y_savedmodel).max() <= 0.1
    assert np.abs(out - model.y_savedmodel).mean() <= 0.02
