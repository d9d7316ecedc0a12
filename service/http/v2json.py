"""Open Inference Protocol (v2) REST tensors: JSON `data`, and Triton's binary tensor data extension.

Request: a JSON header, optionally followed by binary tensor data when the client sends the
`Inference-Header-Content-Length` header (the JSON's length). An input with
`parameters.binary_data_size` N takes the next N bytes of the binary part, in input order: raw
little-endian row-major elements, or for BYTES each element as a 4-byte little-endian length and
its bytes. Reply: outputs as JSON `data` (flattened, row-major), or as binary data when the output's
`parameters.binary_data` (or the request's `parameters.binary_data_output`) is true, in which case
the reply is the JSON header followed by the outputs' bytes, with `Inference-Header-Content-Length`.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from service.datatypes import from_v2, of_numpy
from service.errors import InvalidArgument, ResourceExhausted
from service.http.jsondoc import as_list
from service.http.tensors import numeric_array, string_array

HEADER_LENGTH = "Inference-Header-Content-Length"
_LENGTH = struct.Struct("<I")
_DUMP = orjson.OPT_SERIALIZE_NUMPY


@dataclass(frozen=True)
class InferRequest:
    """A decoded infer request: inputs as arrays, the outputs asked for (name -> binary?), the id to echo."""

    inputs: dict[str, np.ndarray]
    outputs: dict[str, bool | None]  # None: as binary_by_default
    binary_by_default: bool
    request_id: str | None
    signature: str


def decode_infer(header: Any, binary: memoryview, max_elements: int) -> InferRequest:
    """The infer request from its JSON `header` (parsed) and the `binary` part (empty without the extension).

    Raises InvalidArgument naming the field, ResourceExhausted for a tensor over `max_elements`.
    """
    if type(header) is not dict:
        raise InvalidArgument('request body: expected a JSON object with "inputs"')
    parameters = _object(header.get("parameters", {}), "parameters")
    inputs_json = header.get("inputs")
    if type(inputs_json) is not list or not inputs_json:
        raise InvalidArgument("inputs: expected a non-empty list of tensors ({name, shape, datatype, data})")
    inputs, offset = {}, 0
    for index, tensor in enumerate(inputs_json):
        name, array, offset = _input(tensor, f"inputs[{index}]", binary, offset, max_elements)
        if name in inputs:
            raise InvalidArgument(f"inputs[{index}]: input {name!r} appears twice")
        inputs[name] = array
    if offset != len(binary):
        raise InvalidArgument(f"binary data: {len(binary) - offset} bytes after the inputs' binary_data_size add up")
    request_id = header.get("id")
    if request_id is not None and type(request_id) is not str:
        raise InvalidArgument("id: expected a string")
    signature = parameters.get("signature_name", "")
    if type(signature) is not str:
        raise InvalidArgument("parameters.signature_name: expected a string")
    binary_default = _flag(parameters, "binary_data_output", "parameters")
    return InferRequest(inputs, _requested_outputs(header.get("outputs")), binary_default, request_id, signature)


def _input(tensor: Any, field: str, binary: memoryview, offset: int, max_elements: int):
    tensor = _object(tensor, field)
    name = tensor.get("name")
    if type(name) is not str or not name:
        raise InvalidArgument(f"{field}.name: expected a non-empty string")
    field = f"{field} ({name[:64]!r})"
    shape = as_list(tensor.get("shape"))
    if type(shape) is not list or not all(type(d) is int and d >= 0 for d in shape) or len(shape) > 32:
        raise InvalidArgument(f"{field}.shape: expected a list of at most 32 non-negative integers")
    datatype = tensor.get("datatype")
    if type(datatype) is not str:
        raise InvalidArgument(f'{field}.datatype: expected a string such as "FP32"')
    row = from_v2(datatype)
    count = math.prod(shape)
    if count > max_elements:
        raise ResourceExhausted(f"{field}: {count} elements is over the limit of {max_elements}")
    size = _object(tensor.get("parameters", {}), f"{field}.parameters").get("binary_data_size")
    if size is None:
        if "data" not in tensor:
            raise InvalidArgument(f'{field}: expected "data" or parameters.binary_data_size')
        array = (
            string_array(tensor["data"], f"{field}.data", b64=False)
            if row.is_bytes
            else numeric_array(tensor["data"], row.numpy, f"{field}.data")
        )
        return name, _reshaped(array, shape, field), offset
    if type(size) is not int or size < 0 or offset + size > len(binary):
        raise InvalidArgument(
            f"{field}.parameters.binary_data_size: expected a byte count within the "
            f"{len(binary) - offset} binary bytes left, got {size!r}"
        )
    chunk = binary[offset : offset + size]
    return name, _from_binary(chunk, row, shape, count, field), offset + size


def _reshaped(array: np.ndarray, shape: list[int], field: str) -> np.ndarray:
    if array.size != math.prod(shape):
        raise InvalidArgument(f"{field}.data: {array.size} values do not fill shape {shape}")
    return array.reshape(shape)


def _from_binary(chunk: memoryview, row, shape: list[int], count: int, field: str) -> np.ndarray:
    if row.is_bytes:
        return _bytes_elements(chunk, count, field).reshape(shape)
    if len(chunk) != count * row.itemsize:
        raise InvalidArgument(
            f"{field}: binary_data_size {len(chunk)} is not {count} elements of "
            f"{row.itemsize} bytes ({row.v2}) for shape {shape}"
        )
    array = np.frombuffer(chunk, dtype=row.wire).reshape(shape)
    if row.v2 == "BOOL" and array.size and np.frombuffer(chunk, np.uint8).max() > 1:
        raise InvalidArgument(f"{field}: BOOL bytes must be 0 or 1")
    return array.astype(row.numpy, copy=False)


def _bytes_elements(chunk: memoryview, count: int, field: str) -> np.ndarray:
    elements = np.empty(count, dtype=object)
    offset = 0
    for index in range(count):
        if offset + 4 > len(chunk):
            raise InvalidArgument(f"{field}: binary BYTES data ends before element {index} of {count}")
        (length,) = _LENGTH.unpack_from(chunk, offset)
        if offset + 4 + length > len(chunk):
            raise InvalidArgument(f"{field}: binary BYTES element {index} runs past binary_data_size")
        elements[index] = bytes(chunk[offset + 4 : offset + 4 + length])
        offset += 4 + length
    if offset != len(chunk):
        raise InvalidArgument(f"{field}: {len(chunk) - offset} bytes left after {count} BYTES elements")
    return elements


def _requested_outputs(outputs: Any) -> dict[str, bool | None]:
    if outputs is None:
        return {}
    if type(outputs) is not list:
        raise InvalidArgument("outputs: expected a list of {name, parameters}")
    wanted: dict[str, bool | None] = {}
    for index, item in enumerate(outputs):
        output = _object(item, f"outputs[{index}]")
        name = output.get("name")
        if type(name) is not str or not name:
            raise InvalidArgument(f"outputs[{index}].name: expected a non-empty string")
        parameters = _object(output.get("parameters", {}), f"outputs[{index}].parameters")
        wanted[name] = _flag(parameters, "binary_data", f"outputs[{index}].parameters", None)
    return wanted


def _object(value: Any, field: str) -> dict:
    if type(value) is not dict:
        raise InvalidArgument(f"{field}: expected a JSON object")
    return value


def _flag(parameters: dict, key: str, field: str, default: bool | None = False) -> bool | None:
    value = parameters.get(key, default)
    if value is not default and type(value) is not bool:
        raise InvalidArgument(f"{field}.{key}: expected true or false")
    return value


def encode_infer(
    model: str, version: int, request: InferRequest, outputs: Mapping[str, np.ndarray]
) -> tuple[bytes, dict[str, str]]:
    """The reply body and its extra headers (Inference-Header-Content-Length when any output is binary)."""
    described, chunks = [], []
    for name, value in outputs.items():
        binary = request.outputs.get(name)
        binary = request.binary_by_default if binary is None else binary
        entry: dict[str, Any] = {"name": name, "datatype": of_numpy(value.dtype).v2, "shape": list(value.shape)}
        if binary:
            chunk = _to_binary(value)
            entry["parameters"] = {"binary_data_size": len(chunk)}
            chunks.append(chunk)
        else:
            entry["data"] = _to_json(value)
        described.append(entry)
    reply: dict[str, Any] = {"model_name": model, "model_version": str(version), "outputs": described}
    if request.request_id is not None:
        reply["id"] = request.request_id
    header = orjson.dumps(reply, option=_DUMP)
    if not chunks:
        return header, {}
    return b"".join([header, *chunks]), {HEADER_LENGTH: str(len(header))}


def _to_json(value: np.ndarray) -> Any:
    flat = value.reshape(-1)
    if value.dtype == np.dtype(object):
        return [item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item) for item in flat.tolist()]
    if value.dtype == np.float16:
        return flat.astype(np.float32)
    return np.ascontiguousarray(flat)


def _to_binary(value: np.ndarray) -> bytes:
    if value.dtype == np.dtype(object):
        parts = []
        for item in value.reshape(-1).tolist():
            data = item if isinstance(item, bytes) else str(item).encode("utf-8")
            parts += [_LENGTH.pack(len(data)), data]
        return b"".join(parts)
    return np.ascontiguousarray(value, dtype=of_numpy(value.dtype).wire).tobytes()
