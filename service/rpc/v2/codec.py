"""The one place where v2 (Open Inference Protocol) gRPC tensors become ndarrays and back.

Inputs come either all as typed `contents` or all as `raw_input_contents` (one entry per input, in
the order of `inputs`), as the protocol requires. Raw numeric bytes are little-endian row-major and
must be exactly elements x itemsize long; raw BYTES are, per element, a 4-byte little-endian length
followed by that many bytes (Triton's layout). Typed values must fill the shape exactly (the v2
protocol has no TF-style broadcast of one value) and sit in the one field of their datatype; values
that do not fit the datatype (int_contents 300 for INT8) are refused, not truncated. FP16 has no
typed field and travels only raw. Every check runs before any allocation proportional to the
declared shape; errors are InvalidArgument / ResourceExhausted naming the input and what was expected.
String tensors decode to object arrays of bytes; decoded arrays may be read-only views of the message.
"""

from __future__ import annotations

import struct

import numpy as np

from service import datatypes
from service.api import grpc_service_pb2
from service.datatypes import DataType
from service.errors import InvalidArgument, ServingError
from service.tensor_limits import check_shape

MAX_NAME_CHARS = 64
# datatype -> the typed field of InferTensorContents that carries its values (FP16 has none).
CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
# Inclusive ranges for datatypes narrower than their field (int_contents is int32, uint_contents uint32).
_NARROW_RANGE = {
    "INT8": (-(2**7), 2**7 - 1),
    "INT16": (-(2**15), 2**15 - 1),
    "UINT8": (0, 2**8 - 1),
    "UINT16": (0, 2**16 - 1),
}
_LENGTH = struct.Struct("<I")

InferRequest = grpc_service_pb2.ModelInferRequest
InferResponse = grpc_service_pb2.ModelInferResponse


def decode_inputs(request: InferRequest, *, max_elements: int) -> dict[str, np.ndarray]:
    """Every input of `request` as name -> ndarray (numpy dtype from service.datatypes, the declared shape).

    Raises InvalidArgument for a malformed request or tensor (naming the input) and ResourceExhausted
    when a tensor declares more than `max_elements` elements. (Byte sizes need no check of their own:
    every value is in the message, which the server's max_message_bytes already bounds.)
    """
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise InvalidArgument(
            f"raw_input_contents: has {len(raw)} entries but the request has {len(request.inputs)} inputs; "
            "expected one entry per input, in the order of inputs"
        )
    decoded: dict[str, np.ndarray] = {}
    for index, tensor in enumerate(request.inputs):
        name = tensor.name
        try:
            if name in decoded:
                raise InvalidArgument("appears more than once in inputs; expected each input once")
            decoded[name] = decode_tensor(tensor, raw[index] if raw else None, max_elements)
        except ServingError as exc:
            raise type(exc)(f"inputs: input {_shown(name)}: {exc.message}") from None
    return decoded


def decode_tensor(tensor: InferRequest.InferInputTensor, raw: bytes | None, max_elements: int) -> np.ndarray:
    """One input tensor, from `raw` (its raw_input_contents entry) or else from its typed contents."""
    dt = datatypes.from_v2(tensor.datatype)
    shape, count = check_shape(tensor.shape, max_elements)
    if raw is not None:
        if tensor.HasField("contents") and tensor.contents.ByteSize():
            raise InvalidArgument("has both contents and a raw_input_contents entry; send the values in exactly one")
        return _from_raw(raw, dt, shape, count)
    return _from_contents(tensor.contents, dt, shape, count)


def _from_raw(raw: bytes, dt: DataType, shape: tuple[int, ...], count: int) -> np.ndarray:
    if dt.is_bytes:
        if count * _LENGTH.size > len(raw):  # before allocating `count` slots
            raise InvalidArgument(
                f"raw BYTES content has {len(raw)} bytes, too few for shape {list(shape)}: each of its {count} "
                f"elements needs a {_LENGTH.size}-byte length"
            )
        return _split_bytes(raw, count).reshape(shape)
    expected = count * dt.itemsize
    if len(raw) != expected:
        raise InvalidArgument(
            f"raw content has {len(raw)} bytes but shape {list(shape)} of {dt.v2} needs "
            f"{count} x {dt.itemsize} = {expected} bytes"
        )
    if dt.v2 == "BOOL" and raw.translate(None, b"\x00\x01"):
        raise InvalidArgument("raw BOOL content holds bytes other than 0 and 1")
    return np.frombuffer(raw, dtype=dt.wire).reshape(shape)


def _split_bytes(raw: bytes, count: int) -> np.ndarray:
    """Raw BYTES content -> object array of `count` bytes values (4-byte little-endian length, then the bytes)."""
    values = np.empty(count, dtype=object)
    offset, end = 0, len(raw)
    for i in range(count):
        if offset + 4 > end:
            raise InvalidArgument(f"raw BYTES content ends after {i} of {count} elements; expected a 4-byte length")
        (length,) = _LENGTH.unpack_from(raw, offset)
        offset += 4
        if offset + length > end:
            raise InvalidArgument(f"raw BYTES element {i} declares {length} bytes but only {end - offset} remain")
        values[i] = raw[offset : offset + length]
        offset += length
    if offset != end:
        raise InvalidArgument(f"raw BYTES content has {end - offset} bytes after its {count} elements")
    return values


def _from_contents(
    contents: grpc_service_pb2.InferTensorContents, dt: DataType, shape: tuple[int, ...], count: int
) -> np.ndarray:
    field = CONTENTS_FIELD.get(dt.v2)
    populated = [descriptor.name for descriptor, _ in contents.ListFields()]
    stray = [name for name in populated if name != field]
    if stray:
        expected = f"contents.{field}" if field else "raw_input_contents (FP16 has no typed contents field)"
        raise InvalidArgument(f"datatype {dt.v2} carries its values in {expected}, but got contents.{stray[0]}")
    if field is None:
        if count:
            raise InvalidArgument("FP16 values must be sent in raw_input_contents; the protocol has no typed field")
        return np.zeros(shape, dt.numpy)
    values = getattr(contents, field)
    if len(values) != count:
        raise InvalidArgument(f"contents.{field} has {len(values)} values but shape {list(shape)} needs {count}")
    if dt.is_bytes:
        array = np.empty(count, dtype=object)
        array[:] = list(values)
        return array.reshape(shape)
    return _checked_values(values, dt, field).reshape(shape)


def _checked_values(values, dt: DataType, field: str) -> np.ndarray:
    bounds = _NARROW_RANGE.get(dt.v2)
    if bounds is None:
        return np.array(values, dtype=dt.numpy)
    wide = np.array(values, dtype=np.int64)
    low, high = bounds
    if wide.size and (wide.min() < low or wide.max() > high):
        bad = wide[(wide < low) | (wide > high)][0]
        raise InvalidArgument(f"contents.{field} value {bad} is out of range [{low}, {high}] for {dt.v2}")
    return wide.astype(dt.numpy)


def fill_outputs(response: InferResponse, outputs: dict[str, np.ndarray], *, raw: bool) -> None:
    """Write `outputs` into `response`, as raw_output_contents when `raw` (else typed contents).

    FP16 has no typed field, so a response with an FP16 output is raw throughout (the protocol
    wants raw for all outputs or none). Raises InvalidArgument for an output dtype with no v2 datatype.
    """
    arrays = [(name, np.asarray(value)) for name, value in outputs.items()]
    kinds = [(name, value, datatypes.of_numpy(value.dtype)) for name, value in arrays]
    raw = raw or any(dt.v2 not in CONTENTS_FIELD for _, _, dt in kinds)
    for name, value, dt in kinds:
        tensor = response.outputs.add()
        tensor.name = name
        tensor.datatype = dt.v2
        tensor.shape.extend(value.shape)
        if raw:
            response.raw_output_contents.append(raw_bytes(value, dt))
        else:
            _fill_contents(tensor.contents, value, dt)


def raw_bytes(value: np.ndarray, dt: DataType) -> bytes:
    """`value` as raw content: little-endian row-major, or length-prefixed elements for BYTES."""
    if not dt.is_bytes:
        return (value if value.dtype == dt.wire else value.astype(dt.wire)).tobytes()
    parts = []
    for index, element in enumerate(value.ravel().tolist()):
        data = _element_bytes(element, index)
        parts.append(_LENGTH.pack(len(data)))
        parts.append(data)
    return b"".join(parts)


def _fill_contents(contents: grpc_service_pb2.InferTensorContents, value: np.ndarray, dt: DataType) -> None:
    flat = value.ravel().tolist()
    if dt.is_bytes:
        flat = [_element_bytes(element, index) for index, element in enumerate(flat)]
    getattr(contents, CONTENTS_FIELD[dt.v2]).extend(flat)


def _element_bytes(element: object, index: int) -> bytes:
    """A string tensor element as bytes (str as UTF-8); InvalidArgument for anything else, as the TF codec does."""
    if isinstance(element, bytes):
        return element
    if isinstance(element, str):
        return element.encode("utf-8")
    raise InvalidArgument(f"string tensor element {index} is a {type(element).__name__}; expected bytes or str")


def _shown(name: str) -> str:
    return repr(name if len(name) <= MAX_NAME_CHARS else name[:MAX_NAME_CHARS] + "...")
