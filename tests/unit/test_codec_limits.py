"""service.rpc.codec under the limits: single-value fills allocate nothing, string fills have a byte budget."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from service.api import tensor_pb2, types_pb2
from service.errors import ResourceExhausted
from service.rpc.codec import to_ndarray

DEFAULT_MAX_ELEMENTS = 16 * 1024 * 1024


def _fill(dtype: int, dims: list[int], **values) -> tensor_pb2.TensorProto:
    proto = tensor_pb2.TensorProto(dtype=dtype, **values)
    for size in dims:
        proto.tensor_shape.dim.add(size=size)
    return proto


@pytest.mark.parametrize(("dtype", "field", "value"), [
    (types_pb2.DT_DOUBLE, "double_val", 1.5),
    (types_pb2.DT_INT64, "int64_val", -7),
    (types_pb2.DT_STRING, "string_val", b"abc"),
])
def test_regression_a_single_value_fill_is_a_view_not_an_allocation(dtype, field, value):
    """np.full used to allocate the whole declared tensor (128 MiB here) before any check could refuse it."""
    proto = _fill(dtype, [DEFAULT_MAX_ELEMENTS], **{field: [value]})
    tracemalloc.start()
    try:
        array = to_ndarray(proto, "x", max_elements=DEFAULT_MAX_ELEMENTS, max_string_bytes=64 << 20)
        peak_bytes = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak_bytes < 64 * 1024
    assert array.shape == (DEFAULT_MAX_ELEMENTS,) and array.strides == (0,)
    assert not array.flags.writeable
    assert array[0] == value and array[-1] == value


def test_string_fill_over_the_byte_budget_is_refused():
    proto = _fill(types_pb2.DT_STRING, [1024, 64], string_val=[b"s" * 1024])  # expands to exactly 64 MiB
    with pytest.raises(ResourceExhausted, match="would fill 65536 elements"):
        to_ndarray(proto, "text", max_elements=DEFAULT_MAX_ELEMENTS, max_string_bytes=(64 << 20) - 1)
    array = to_ndarray(proto, "text", max_elements=DEFAULT_MAX_ELEMENTS, max_string_bytes=64 << 20)
    assert array.shape == (1024, 64)


def test_string_values_sent_in_full_are_not_subject_to_the_fill_budget():
    values = [b"x" * 100] * 4
    array = to_ndarray(_fill(types_pb2.DT_STRING, [4], string_val=values), "t", max_elements=8, max_string_bytes=10)
    assert array.tolist() == values
    assert np.asarray(array).dtype == object
