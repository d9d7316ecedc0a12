"""Build v2 ModelInfer requests and read their responses in tests, written apart from service/rpc/v2/codec.py.

Encodings follow the protocol text (raw: little-endian row-major; BYTES: 4-byte little-endian length
then the bytes; typed: the one contents field of the datatype), so the server's codec is checked
against an independent reading of the protocol rather than against itself.
"""

from __future__ import annotations

import struct

import numpy as np

from service.api import grpc_service_pb2 as pb

DATATYPE = {
    "b1": "BOOL",
    "u1": "UINT8",
    "u2": "UINT16",
    "u4": "UINT32",
    "u8": "UINT64",
    "i1": "INT8",
    "i2": "INT16",
    "i4": "INT32",
    "i8": "INT64",
    "f2": "FP16",
    "f4": "FP32",
    "f8": "FP64",
    "O": "BYTES",
}
NUMPY = {name: np.dtype(code) for code, name in DATATYPE.items()}
FIELD = {
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


def datatype(array: np.ndarray) -> str:
    code = "O" if array.dtype.kind in "OS" else array.dtype.str.lstrip("<>|=")
    return DATATYPE[code]


def raw_of(array: np.ndarray) -> bytes:
    if datatype(array) == "BYTES":
        return b"".join(struct.pack("<I", len(v)) + v for v in array.ravel().tolist())
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


def infer_request(
    model: str,
    inputs: dict[str, np.ndarray],
    *,
    raw: bool = True,
    outputs: tuple[str, ...] = (),
    version: str = "",
    request_id: str = "",
) -> pb.ModelInferRequest:
    """A ModelInferRequest carrying `inputs` as raw_input_contents (raw=True) or typed contents."""
    request = pb.ModelInferRequest(model_name=model, model_version=version, id=request_id)
    for name, array in inputs.items():
        tensor = request.inputs.add(name=name, datatype=datatype(array), shape=array.shape)
        if raw:
            request.raw_input_contents.append(raw_of(array))
        else:
            getattr(tensor.contents, FIELD[tensor.datatype]).extend(array.ravel().tolist())
    for name in outputs:
        request.outputs.add(name=name)
    return request


def outputs_of(response: pb.ModelInferResponse) -> dict[str, np.ndarray]:
    """Every output of a response as an ndarray, from raw_output_contents or typed contents."""
    decoded = {}
    for index, tensor in enumerate(response.outputs):
        dtype = NUMPY[tensor.datatype]
        if response.raw_output_contents:
            data = response.raw_output_contents[index]
            values = _split(data) if tensor.datatype == "BYTES" else np.frombuffer(data, dtype.newbyteorder("<"))
        else:
            values = np.array(list(getattr(tensor.contents, FIELD[tensor.datatype])), dtype=dtype)
        decoded[tensor.name] = values.reshape(tuple(tensor.shape))
    return decoded


def _split(data: bytes) -> np.ndarray:
    values, offset = [], 0
    while offset < len(data):
        (length,) = struct.unpack_from("<I", data, offset)
        values.append(data[offset + 4 : offset + 4 + length])
        offset += 4 + length
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array
