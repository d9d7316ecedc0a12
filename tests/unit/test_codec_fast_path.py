"""The codec's fast path for plain tensor_content requests agrees with the general decoder on any message."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.api import tensor_pb2, types_pb2
from service.cache import BoundedCache
from service.errors import ResourceExhausted, ServingError
from service.rpc import codec
from tests.support.tensors import VALUE_FIELDS

MAX_ELEMENTS = 10_000
NUMERIC = [dt for dt in codec._WIRE_DTYPE if dt != types_pb2.DT_STRING]


@st.composite
def tensor_messages(draw) -> tensor_pb2.TensorProto:
    """TensorProtos that are mostly plain (dtype, shape, content) with random deviations from it."""
    proto = tensor_pb2.TensorProto()
    proto.dtype = draw(st.sampled_from([*NUMERIC, types_pb2.DT_STRING, 0, 23, -1]))
    dims = draw(st.lists(st.integers(-2, 6), max_size=4))  # small: content is up to 1,296 elements
    if draw(st.booleans()):
        proto.tensor_shape.SetInParent()  # present even when it has no dims
    for size in dims:
        proto.tensor_shape.dim.add(size=size)
    proto.tensor_shape.unknown_rank = draw(st.booleans()) and draw(st.booleans())
    itemsize = codec._WIRE_DTYPE.get(proto.dtype, np.dtype("u1")).itemsize
    count = int(np.prod([max(d.size, 0) for d in proto.tensor_shape.dim]))
    length = draw(st.sampled_from([count * itemsize, count * itemsize + 1, max(0, count * itemsize - 1), 3]))
    seed = draw(st.integers(0, 255))
    proto.tensor_content = bytes((seed + i) % 256 for i in range(length))
    proto.version_number = draw(st.sampled_from([0, 0, 1, 300, -5]))
    if draw(st.booleans()):
        field = draw(st.sampled_from(VALUE_FIELDS))
        getattr(proto, field).append(b"x" if field == "string_val" else 1)
    raw = proto.SerializeToString()
    if draw(st.booleans()):
        raw += bytes([0xA8, 0x02, 0x07])  # an unknown varint field (number 37)
    return tensor_pb2.TensorProto.FromString(raw)


def _outcome(decode, proto: tensor_pb2.TensorProto):
    """(dtype, shape, bytes) of the decoded array, or (error type, message)."""
    try:
        array = decode(proto)
    except ServingError as exc:
        return type(exc), str(exc)
    return array.dtype, array.shape, array.tobytes()


def _general_only(proto: tensor_pb2.TensorProto) -> np.ndarray:
    codec.numpy_dtype(proto.dtype)
    return codec._decode_general(proto, proto.dtype, proto.tensor_content, MAX_ELEMENTS, None)


@settings(max_examples=300, deadline=None)
@given(tensor_messages())
def test_decoding_with_the_fast_path_equals_the_general_path(proto):
    with_fast_path = _outcome(lambda p: codec._decode(p, MAX_ELEMENTS, None), proto)
    assert with_fast_path == _outcome(_general_only, proto)


@pytest.mark.parametrize("dt", NUMERIC)
@pytest.mark.parametrize("shape", [(1, 28, 28, 1), (3, 4), (2,), (70000,), ()], ids=str)
def test_plain_requests_take_the_fast_path(dt, shape):
    proto = tensor_pb2.TensorProto(dtype=dt, version_number=2)
    for size in shape:
        proto.tensor_shape.dim.add(size=size)
    proto.tensor_content = bytes(int(np.prod(shape)) * codec._WIRE_DTYPE[dt].itemsize)
    fast = codec._decode_plain_content(proto, dt, proto.tensor_content, 100_000)
    assert fast is not None and fast.shape == shape


def test_the_shape_cache_stays_bounded_and_is_hit_by_repeated_shapes():
    shapes = BoundedCache(8)
    for n in [*range(20), 19, 19]:
        proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_UINT8, tensor_content=bytes(n + 1))
        proto.tensor_shape.dim.add(size=n + 1)
        assert codec.to_ndarray(proto, "x", max_elements=1 << 20, shapes=shapes).shape == (n + 1,)
    assert len(shapes) == 8 and (shapes.misses, shapes.hits) == (20, 2)


def test_a_refused_shape_is_never_cached():
    shapes = BoundedCache(8)
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_UINT8, tensor_content=bytes(4))
    proto.tensor_shape.dim.add(size=4)
    with pytest.raises(ResourceExhausted):
        codec.to_ndarray(proto, "x", max_elements=2, shapes=shapes)
    assert len(shapes) == 0
