"""The one place where a TensorProto becomes an ndarray and back (TF's MakeNdarray semantics, hardened).

Decoding follows `tf.make_ndarray` with these deliberate differences, all answered with
InvalidArgument / ResourceExhausted instead of TF's silent repairs or crashes:
  - the element count is checked against `max_elements` before anything is allocated;
  - `tensor_content` must be exactly elements * itemsize bytes (TF reshapes whatever came);
  - a typed value field must hold exactly `elements` values, or exactly 1 value that fills the
    tensor (TF's broadcast rule, kept). TF pads a short list with its last value and fills an
    empty one with zeros; we refuse both, because in practice they are client bugs that would
    otherwise turn into plausible-looking wrong predictions;
  - values that do not fit the dtype (int_val 300 for DT_INT8, half_val outside 0..65535,
    bool bytes other than 0/1) are refused instead of being truncated;
  - values in a field that does not belong to the dtype, or in both tensor_content and a typed
    field, are refused (TF silently ignores one of them);
  - unknown_rank, negative dimensions, rank above MAX_RANK and any single dimension above
    `max_elements` (even when another dimension is 0) are refused;
  - a single value that fills the tensor decodes to a read-only broadcast view (no allocation
    proportional to the declared shape); a string fill is refused when its expanded size is over
    `max_string_bytes`, so a tiny request cannot make the model process gigabytes.

Wire bytes are little-endian row-major. Decoding reads them with explicit little-endian dtypes;
on a little-endian host (the only kind we support: big-endian hosts are untested and would get
byte-swapped arrays that fail dtype checks downstream) the array is a view of the bytes protobuf
hands out, so the only copy is protobuf's. String tensors decode to object arrays of `bytes`.
Input names are shortened in error messages so a hostile name cannot bloat the gRPC status.
"""

from __future__ import annotations

import numpy as np

from service.api import tensor_pb2, tensor_shape_pb2, types_pb2
from service.cache import BoundedCache
from service.datatypes import DATATYPES, of_numpy
from service.errors import InvalidArgument, ServingError
from service.tensor_limits import MAX_RANK, check_shape, check_string_fill  # noqa: F401 (MAX_RANK: re-exported)

DT = types_pb2.DataType  # NOTE: DT.DT_X goes through a slow __getattr__; hot paths use types_pb2.DT_X (plain ints)
MAX_NAME_CHARS = 64

# DataType -> the little-endian numpy dtype of its wire bytes (object for strings), from the one table.
_WIRE_DTYPE: dict[int, np.dtype] = {types_pb2.DataType.Value(row.tf): row.wire for row in DATATYPES}
_NATIVE_DTYPE = {dt: dtype.newbyteorder("=") for dt, dtype in _WIRE_DTYPE.items()}
# The typed field that carries each dtype's values (as TF's make_tensor_proto writes them).
_VALUE_FIELD: dict[int, str] = {
    types_pb2.DT_HALF: "half_val",
    types_pb2.DT_FLOAT: "float_val",
    types_pb2.DT_DOUBLE: "double_val",
    types_pb2.DT_INT8: "int_val",
    types_pb2.DT_INT16: "int_val",
    types_pb2.DT_INT32: "int_val",
    types_pb2.DT_UINT8: "int_val",
    types_pb2.DT_UINT16: "int_val",
    types_pb2.DT_INT64: "int64_val",
    types_pb2.DT_UINT32: "uint32_val",
    types_pb2.DT_UINT64: "uint64_val",
    types_pb2.DT_BOOL: "bool_val",
    types_pb2.DT_STRING: "string_val",
}
_ALL_VALUE_FIELDS = (
    "half_val", "float_val", "double_val", "int_val", "string_val", "scomplex_val",
    "int64_val", "bool_val", "dcomplex_val", "uint32_val", "uint64_val",
)
_FIELD_ORDER = {field: i for i, field in enumerate(_ALL_VALUE_FIELDS)}  # error messages name them in this order
# Inclusive value ranges for fields wider than their dtype (int_val is int32, half_val holds uint16 bits).
_NARROW_RANGE: dict[int, tuple[int, int]] = {
    types_pb2.DT_INT8: (-(2**7), 2**7 - 1),
    types_pb2.DT_UINT8: (0, 2**8 - 1),
    types_pb2.DT_INT16: (-(2**15), 2**15 - 1),
    types_pb2.DT_UINT16: (0, 2**16 - 1),
    types_pb2.DT_HALF: (0, 2**16 - 1),
}
SUPPORTED_DTYPES = tuple(DT.Name(dt) for dt in _WIRE_DTYPE)
# Fast path for datatype_of on the dtypes models return (native byte order, not strings).
_DATATYPE_OF_NATIVE: dict[np.dtype, int] = {
    dtype: dt for dt, dtype in _NATIVE_DTYPE.items() if dt != types_pb2.DT_STRING
}


def dtype_name(dt: int) -> str:
    """The DataType enum name of `dt` (e.g. "DT_FLOAT"), or a description of an unknown value."""
    try:
        return DT.Name(dt)
    except ValueError:
        return f"DataType {dt} (unknown)"


def numpy_dtype(dt: int) -> np.dtype:
    """DataType -> native numpy dtype (object for DT_STRING); raises InvalidArgument if unsupported."""
    try:
        return _NATIVE_DTYPE[dt]
    except KeyError:
        raise InvalidArgument(
            f"dtype {dtype_name(dt)} is not supported; expected one of {', '.join(SUPPORTED_DTYPES)}"
        ) from None


def datatype_of(np_dtype: object) -> int:
    """numpy dtype (anything np.dtype accepts) -> DataType; object/bytes/str arrays map to DT_STRING.

    Raises InvalidArgument for dtypes with no supported DataType (complex, datetime, structured, ...).
    """
    known = _DATATYPE_OF_NATIVE.get(np_dtype) if isinstance(np_dtype, np.dtype) else None
    if known is not None:
        return known
    return types_pb2.DataType.Value(of_numpy(np_dtype, SUPPORTED_DTYPES).tf)


def to_ndarray(
    proto: tensor_pb2.TensorProto,
    name: str,
    *,
    max_elements: int,
    max_string_bytes: int | None = None,
    shapes: ShapeCache | None = None,
) -> np.ndarray:
    """Decode request tensor `name` into an ndarray of numpy_dtype(proto.dtype) and the declared shape.

    Raises InvalidArgument ("input 'name': ..." saying what was expected and what came) for a
    malformed tensor, or ResourceExhausted when it declares more than `max_elements` elements or
    a string fill expands to more than `max_string_bytes` bytes; all before any allocation
    proportional to the declared shape. The result may be a read-only view of the message's
    bytes, or a broadcast view of one value: treat it as immutable. `shapes` (owned by the caller,
    e.g. the servicer) remembers checked shapes so repeated requests skip the per-dimension walk.
    """
    try:
        return _decode(proto, max_elements, max_string_bytes, shapes)
    except ServingError as exc:
        shown = name if len(name) <= MAX_NAME_CHARS else name[:MAX_NAME_CHARS] + "..."
        raise type(exc)(f"input {shown!r}: {exc.message}") from None


def to_tensor_proto(array: np.ndarray) -> tensor_pb2.TensorProto:
    """Encode an ndarray: numeric and bool as little-endian row-major tensor_content, strings as string_val.

    String tensors may hold bytes or str (encoded as UTF-8); fixed-width numpy bytes ('S')
    lose trailing NUL bytes, as numpy itself does. Raises InvalidArgument for unsupported dtypes
    or string tensors holding other objects.
    """
    proto = tensor_pb2.TensorProto()
    fill_tensor_proto(proto, array)
    return proto


def fill_tensor_proto(proto: tensor_pb2.TensorProto, array: np.ndarray) -> None:
    """Encode `array` into `proto`, an empty TensorProto (e.g. `response.outputs[name]`), in place.

    Same encoding and errors as to_tensor_proto. Writing into the response's own message instead
    of building a TensorProto and CopyFrom-ing it saves a full copy of every output on the hot path.
    """
    array = np.asarray(array)
    dt = datatype_of(array.dtype)
    proto.dtype = dt
    dims = proto.tensor_shape.dim
    for size in array.shape:
        dims.add(size=size)
    if dt == types_pb2.DT_STRING:
        proto.string_val.extend(_string_values(array))
    else:
        proto.tensor_content = _content_bytes(array, dt)


def _content_bytes(array: np.ndarray, dt: int) -> bytes:
    wire = _WIRE_DTYPE[dt]
    # tobytes() always writes C (row-major) order, so only the byte order/width may need converting.
    return (array if array.dtype == wire else array.astype(wire)).tobytes()


def encode_content(array: np.ndarray) -> bytes | None:
    """The tensor_content bytes of a numeric or bool ndarray as fill_tensor_proto writes them; None for strings.

    Raises InvalidArgument for unsupported dtypes, as fill_tensor_proto does.
    """
    dt = datatype_of(array.dtype)
    return None if dt == types_pb2.DT_STRING else _content_bytes(array, dt)


def _string_values(array: np.ndarray) -> list[bytes]:
    values = array.ravel().tolist()
    for i, value in enumerate(values):
        if isinstance(value, str):
            values[i] = value.encode("utf-8")
        elif not isinstance(value, bytes):
            raise InvalidArgument(f"string tensor element {i} is a {type(value).__name__}; expected bytes or str")
    return values


def _decode(
    proto: tensor_pb2.TensorProto, max_elements: int, max_string_bytes: int | None, shapes: ShapeCache | None = None
) -> np.ndarray:
    dt = proto.dtype
    numpy_dtype(dt)  # refuses unsupported dtypes first: their shapes and values are meaningless
    content = proto.tensor_content  # NOTE: every access copies the bytes out of the message; read once.
    if content and dt != types_pb2.DT_STRING:
        array = _decode_plain_content(proto, dt, content, max_elements, shapes)
        if array is not None:
            return array
    return _decode_general(proto, dt, content, max_elements, max_string_bytes)


def _decode_general(
    proto: tensor_pb2.TensorProto, dt: int, content: bytes, max_elements: int, max_string_bytes: int | None
) -> np.ndarray:
    shape, count = _checked_shape(proto.tensor_shape, max_elements)
    # ListFields() names only the fields that are set: one call instead of a len(getattr()) per value field.
    populated = [field.name for field, _ in proto.ListFields() if field.name in _FIELD_ORDER]
    if len(populated) > 1:
        populated.sort(key=_FIELD_ORDER.__getitem__)
    if content:
        if populated:
            raise InvalidArgument(f"both tensor_content and {populated[0]} are set; send the values in exactly one")
        return _from_content(content, dt, shape, count)
    field = _VALUE_FIELD[dt]
    stray = [other for other in populated if other != field]
    if stray:
        raise InvalidArgument(
            f"dtype {dtype_name(dt)} carries its values in tensor_content or {field}, but got {stray[0]}"
        )
    values = getattr(proto, field)
    if dt == types_pb2.DT_STRING and len(values) == 1 and max_string_bytes is not None:
        check_string_fill(len(values[0]), count, max_string_bytes, "string_val")
    return _from_values(values, dt, field, shape, count)


def _decode_plain_content(
    proto: tensor_pb2.TensorProto, dt: int, content: bytes, max_elements: int, shapes: ShapeCache | None = None
) -> np.ndarray | None:
    """The usual request (dtype, shape and tensor_content, nothing else), decoded; None for anything else.

    The hot path of every Predict. Two shortcuts, each exact:
      - with `shapes`, a shape is checked once per distinct serialized TensorShapeProto (and
        limit) and cached, instead of walking the dims through a Python wrapper on every request;
      - "no other field is set" is proved by size: proto3 serializes dtype, tensor_shape,
        version_number and tensor_content in a size computable from their values, so if
        ByteSize() equals that sum nothing else (no value field, no unknown field) is present.
    None sends the caller down the general path, which gives the precise error if there is one.
    """
    shape_proto = proto.tensor_shape
    shape_bytes = shape_proto.SerializeToString()
    key = (shape_bytes, max_elements)
    checked = shapes.get(key) if shapes is not None else None
    if checked is None:
        checked = _checked_shape(shape_proto, max_elements)  # raises for shapes we refuse (never cached)
        if shapes is not None:
            shapes.put(key, checked)
    expected = _varint_field_size(dt) + _varint_field_size(proto.version_number) + _bytes_field_size(len(content))
    if proto.HasField("tensor_shape"):
        expected += _bytes_field_size(len(shape_bytes))
    if proto.ByteSize() != expected:
        return None
    shape, count = checked
    return _from_content(content, dt, shape, count)


ShapeCache = BoundedCache[tuple[bytes, int], tuple[tuple[int, ...], int]]  # (shape bytes, limit) -> (shape, count)


def _varint_size(value: int) -> int:
    """Bytes of `value` as a protobuf varint (negative int32/enum values take 10, as protobuf writes them)."""
    if value < 0:
        return 10
    return max(1, (value.bit_length() + 6) // 7)


def _varint_field_size(value: int) -> int:
    """Serialized size of a proto3 scalar varint field numbered 1-15 (absent when 0)."""
    return 0 if value == 0 else 1 + _varint_size(value)


def _bytes_field_size(length: int) -> int:
    """Serialized size of a length-delimited field numbered 1-15 holding `length` bytes."""
    return 1 + _varint_size(length) + length


def _checked_shape(shape_proto: tensor_shape_pb2.TensorShapeProto, max_elements: int) -> tuple[tuple[int, ...], int]:
    """The declared shape and its element count; refuses anything that cannot be allocated safely."""
    if shape_proto.unknown_rank:
        raise InvalidArgument("tensor_shape.unknown_rank is set; expected a fully known shape")
    return check_shape([dim.size for dim in shape_proto.dim], max_elements, "tensor_shape")


def _from_content(content: bytes, dt: int, shape: tuple[int, ...], count: int) -> np.ndarray:
    if dt == types_pb2.DT_STRING:
        raise InvalidArgument("DT_STRING values must be sent in string_val, not tensor_content")
    wire = _WIRE_DTYPE[dt]
    expected_bytes = count * wire.itemsize
    if len(content) != expected_bytes:
        raise InvalidArgument(
            f"tensor_content has {len(content)} bytes but shape {list(shape)} of {dtype_name(dt)} needs "
            f"{count} x {wire.itemsize} = {expected_bytes} bytes"
        )
    if dt == types_pb2.DT_BOOL and content.translate(None, b"\x00\x01"):
        raise InvalidArgument("DT_BOOL tensor_content holds bytes other than 0 and 1")
    return np.frombuffer(content, dtype=wire).reshape(shape)


def _from_values(values, dt: int, field: str, shape: tuple[int, ...], count: int) -> np.ndarray:
    n = len(values)
    if n == count:
        return _convert(values, dt, field).reshape(shape)
    if n == 1:  # TF's rule: a single value fills the whole tensor (a view: nothing is allocated here)
        return np.broadcast_to(_convert(values, dt, field).reshape(()), shape)
    raise InvalidArgument(
        f"{field} has {n} values but shape {list(shape)} needs {count} (or exactly 1 to fill the tensor)"
    )


def _convert(values, dt: int, field: str) -> np.ndarray:
    """A repeated value field -> 1-D array of the dtype, refusing values that do not fit."""
    if dt == types_pb2.DT_STRING:
        array = np.empty(len(values), dtype=object)
        array[:] = list(values)
        return array
    bounds = _NARROW_RANGE.get(dt)
    if bounds is None:
        return np.array(values, dtype=_WIRE_DTYPE[dt])
    wide = np.array(values, dtype=np.int32)
    low, high = bounds
    if wide.size and (wide.min() < low or wide.max() > high):
        bad = wide[(wide < low) | (wide > high)][0]
        raise InvalidArgument(f"{field} value {bad} is out of range [{low}, {high}] for {dtype_name(dt)}")
    if dt == types_pb2.DT_HALF:
        return wide.astype(np.uint16).view(np.float16)
    return wide.astype(_WIRE_DTYPE[dt])
