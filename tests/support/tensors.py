"""Tensor test data: sample arrays for every served dtype, an independent typed-field encoder, exact compare."""

from __future__ import annotations

import numpy as np

from service.api import tensor_pb2, types_pb2

DT = types_pb2.DataType
DTYPES = [
    np.dtype(name)
    for name in ("float16", "float32", "float64", "int8", "int16", "int32", "int64",
                 "uint8", "uint16", "uint32", "uint64", "bool", "object")
]
VALUE_FIELDS = (
    "half_val", "float_val", "double_val", "int_val", "string_val", "scomplex_val",
    "int64_val", "bool_val", "dcomplex_val", "uint32_val", "uint64_val",
)
# Written by hand from TF's tensor.proto comments, not from the codec under test.
_TYPED = {
    "float16": (DT.DT_HALF, "half_val"), "float32": (DT.DT_FLOAT, "float_val"),
    "float64": (DT.DT_DOUBLE, "double_val"), "int8": (DT.DT_INT8, "int_val"), "int16": (DT.DT_INT16, "int_val"),
    "int32": (DT.DT_INT32, "int_val"), "int64": (DT.DT_INT64, "int64_val"), "uint8": (DT.DT_UINT8, "int_val"),
    "uint16": (DT.DT_UINT16, "int_val"), "uint32": (DT.DT_UINT32, "uint32_val"),
    "uint64": (DT.DT_UINT64, "uint64_val"), "bool": (DT.DT_BOOL, "bool_val"), "object": (DT.DT_STRING, "string_val"),
}


def sample_array(dtype: np.dtype, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Deterministic values of `dtype` that include the type's extremes (and -0.0, inf, NaN for floats)."""
    rng = np.random.default_rng(seed)
    size = int(np.prod(shape))
    dtype = np.dtype(dtype)
    if dtype.kind == "O":
        pool = [b"", b"a", "\u00e9t\u00e9".encode(), b"\x00\xff binary", b"x" * 40]
        flat = np.array([pool[i % len(pool)] for i in range(size)] + [b""], dtype=object)[:size]
    elif dtype.kind == "b":
        flat = rng.integers(0, 2, size).astype(bool)
    elif dtype.kind == "f":
        info = np.finfo(dtype)
        special = np.array([-0.0, np.inf, -np.inf, np.nan, info.max, info.tiny, info.smallest_subnormal], dtype)
        flat = np.resize(np.concatenate([special, (rng.standard_normal(size) * 100).astype(dtype)]), size)
    else:
        info = np.iinfo(dtype)
        extremes = np.array([info.min, info.max, 0, 1], dtype)
        randoms = rng.integers(info.min, info.max, size, dtype=dtype, endpoint=True)
        flat = np.resize(np.concatenate([extremes, randoms]), size)
    return flat.reshape(shape)


def typed_proto(array: np.ndarray) -> tensor_pb2.TensorProto:
    """Encode `array` the way a hand-written TF Serving client would: typed value fields, no tensor_content."""
    dt, field = _TYPED[array.dtype.name]
    proto = tensor_pb2.TensorProto(dtype=dt)
    for size in array.shape:
        proto.tensor_shape.dim.add(size=size)
    flat = array.ravel()
    values = flat.view(np.uint16).tolist() if dt == DT.DT_HALF else flat.tolist()
    getattr(proto, field).extend(values)
    return proto


def assert_same(actual: np.ndarray, expected: np.ndarray) -> None:
    """Exact equality: dtype, shape, and values bit for bit (NaN payloads and -0.0 included)."""
    assert actual.dtype == expected.dtype, (actual.dtype, expected.dtype)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    if expected.dtype == object:
        assert actual.tolist() == expected.tolist()
    elif expected.dtype.kind == "f":
        unsigned = f"u{expected.dtype.itemsize}"
        np.testing.assert_array_equal(actual.view(unsigned), expected.view(unsigned))
    else:
        np.testing.assert_array_equal(actual, expected)
