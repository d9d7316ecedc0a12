"""Request bytes for load generation: TF Serving Predict (our protos) and KServe v2 ModelInfer (no generated code).

Both builders return serialized bytes, so a load generator serializes each request once and
sends the same bytes on every call. The v2 messages come from a descriptor built here with
descriptor_pb2 in a private pool: no generated code and no extra package (tritonclient,
mlserver) is needed to speak `inference.GRPCInferenceService/ModelInfer`.
"""

from __future__ import annotations

import functools

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from service.api import predict_pb2
from service.rpc.codec import to_ndarray, to_tensor_proto

F = descriptor_pb2.FieldDescriptorProto  # field types and labels

PREDICT_METHOD = "/tensorflow.serving.PredictionService/Predict"
V2_INFER_METHOD = "/inference.GRPCInferenceService/ModelInfer"

# numpy dtype -> v2 protocol datatype name (KServe "Tensor Data Types").
_V2_DATATYPE = {
    np.dtype(np.bool_): "BOOL", np.dtype(np.uint8): "UINT8", np.dtype(np.uint16): "UINT16",
    np.dtype(np.uint32): "UINT32", np.dtype(np.uint64): "UINT64", np.dtype(np.int8): "INT8",
    np.dtype(np.int16): "INT16", np.dtype(np.int32): "INT32", np.dtype(np.int64): "INT64",
    np.dtype(np.float16): "FP16", np.dtype(np.float32): "FP32", np.dtype(np.float64): "FP64",
}
_V2_NUMPY = {name: dtype for dtype, name in _V2_DATATYPE.items()}


def predict_request(
    model: str, inputs: dict[str, np.ndarray], signature: str = "", version: int | None = None
) -> bytes:
    """A serialized tensorflow.serving.PredictRequest (tensor_content encoding, as our client sends)."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    if signature:
        request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    for name, array in inputs.items():
        request.inputs[name].CopyFrom(to_tensor_proto(array))
    return request.SerializeToString()


def renamed_predict_request(request: bytes, model: str) -> bytes:
    """The serialized PredictRequest `request` asking for `model` instead (e.g. one the server does not serve)."""
    message = predict_pb2.PredictRequest.FromString(request)
    message.model_spec.name = model
    return message.SerializeToString()


def predict_outputs(response: bytes) -> dict[str, np.ndarray]:
    """Decode a serialized PredictResponse's outputs (for checking answers, not on the hot path)."""
    message = predict_pb2.PredictResponse.FromString(response)
    return {name: to_ndarray(t, name, max_elements=1 << 30) for name, t in message.outputs.items()}


def v2_infer_request(model: str, input_name: str, array: np.ndarray, version: str = "") -> bytes:
    """A serialized inference.ModelInferRequest with one input sent as raw_input_contents.

    `array` must have a dtype the v2 protocol knows (bool, [u]int8..64, float16/32/64);
    raises KeyError otherwise. The bytes are little-endian row-major, as the protocol requires.
    """
    array = np.asarray(array)
    datatype = _V2_DATATYPE[array.dtype.newbyteorder("=")]
    request = _v2_class("ModelInferRequest")()
    request.model_name = model
    request.model_version = version
    tensor = request.inputs.add()
    tensor.name = input_name
    tensor.datatype = datatype
    tensor.shape.extend(array.shape)
    request.raw_input_contents.append(np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes())
    return request.SerializeToString()


def v2_infer_outputs(response: bytes) -> dict[str, np.ndarray]:
    """Decode a serialized inference.ModelInferResponse's raw_output_contents into arrays by name.

    Outputs sent in `contents` (typed lists) instead of raw bytes are decoded too.
    """
    message = _v2_class("ModelInferResponse").FromString(response)
    outputs = {}
    for i, tensor in enumerate(message.outputs):
        dtype = _V2_NUMPY[tensor.datatype].newbyteorder("<")
        if i < len(message.raw_output_contents):
            flat = np.frombuffer(message.raw_output_contents[i], dtype=dtype)
        else:
            contents = tensor.contents
            field = _CONTENTS_FIELD[tensor.datatype]
            flat = np.array(getattr(contents, field), dtype=dtype)
        outputs[tensor.name] = flat.reshape(tuple(tensor.shape))
    return outputs


_CONTENTS_FIELD = {
    "BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
    "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
    "UINT64": "uint64_contents", "FP32": "fp32_contents", "FP64": "fp64_contents",
}


@functools.cache
def _v2_class(name: str) -> type:
    """The message class `inference.<name>` from the private v2 pool."""
    pool = _v2_pool()
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"inference.{name}"))


@functools.cache
def _v2_pool() -> descriptor_pool.DescriptorPool:
    """A private pool holding the KServe v2 messages that ModelInfer uses (grpc_predict_v2.proto)."""
    file = descriptor_pb2.FileDescriptorProto(name="batchwise_loadtests/grpc_predict_v2.proto", package="inference")
    file.syntax = "proto3"

    parameter = file.message_type.add(name="InferParameter")
    parameter.oneof_decl.add(name="parameter_choice")
    for number, (field, kind) in enumerate(
        [("bool_param", F.TYPE_BOOL), ("int64_param", F.TYPE_INT64), ("string_param", F.TYPE_STRING),
         ("double_param", F.TYPE_DOUBLE), ("uint64_param", F.TYPE_UINT64)], start=1,
    ):
        parameter.field.add(name=field, number=number, type=kind, label=F.LABEL_OPTIONAL, oneof_index=0)

    contents = file.message_type.add(name="InferTensorContents")
    for number, (field, kind) in enumerate(
        [("bool_contents", F.TYPE_BOOL), ("int_contents", F.TYPE_INT32), ("int64_contents", F.TYPE_INT64),
         ("uint_contents", F.TYPE_UINT32), ("uint64_contents", F.TYPE_UINT64), ("fp32_contents", F.TYPE_FLOAT),
         ("fp64_contents", F.TYPE_DOUBLE), ("bytes_contents", F.TYPE_BYTES)], start=1,
    ):
        contents.field.add(name=field, number=number, type=kind, label=F.LABEL_REPEATED)

    request = file.message_type.add(name="ModelInferRequest")
    _tensor_message(request, "inference.ModelInferRequest", "InferInputTensor")
    requested = request.nested_type.add(name="InferRequestedOutputTensor")
    _scalar(requested, "name", 1, F.TYPE_STRING)
    _parameters(requested, "inference.ModelInferRequest.InferRequestedOutputTensor", 2)
    _header(request, "inference.ModelInferRequest")
    _repeated(request, "inputs", 5, ".inference.ModelInferRequest.InferInputTensor")
    _repeated(request, "outputs", 6, ".inference.ModelInferRequest.InferRequestedOutputTensor")
    request.field.add(name="raw_input_contents", number=7, type=F.TYPE_BYTES, label=F.LABEL_REPEATED)

    response = file.message_type.add(name="ModelInferResponse")
    _tensor_message(response, "inference.ModelInferResponse", "InferOutputTensor")
    _header(response, "inference.ModelInferResponse")
    _repeated(response, "outputs", 5, ".inference.ModelInferResponse.InferOutputTensor")
    response.field.add(name="raw_output_contents", number=6, type=F.TYPE_BYTES, label=F.LABEL_REPEATED)

    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return pool


def _scalar(message: descriptor_pb2.DescriptorProto, name: str, number: int, kind: int) -> None:
    message.field.add(name=name, number=number, type=kind, label=F.LABEL_OPTIONAL)


def _repeated(message: descriptor_pb2.DescriptorProto, name: str, number: int, type_name: str) -> None:
    message.field.add(name=name, number=number, type=F.TYPE_MESSAGE, label=F.LABEL_REPEATED, type_name=type_name)


def _parameters(message: descriptor_pb2.DescriptorProto, full_name: str, number: int) -> None:
    """A `map<string, InferParameter> parameters` field (a nested map-entry message) on `full_name`."""
    entry = message.nested_type.add(name="ParametersEntry")
    entry.options.map_entry = True
    _scalar(entry, "key", 1, F.TYPE_STRING)
    entry.field.add(name="value", number=2, type=F.TYPE_MESSAGE, label=F.LABEL_OPTIONAL,
                    type_name=".inference.InferParameter")
    _repeated(message, "parameters", number, f".{full_name}.ParametersEntry")


def _header(message: descriptor_pb2.DescriptorProto, full_name: str) -> None:
    """model_name = 1, model_version = 2, id = 3, parameters = 4 (shared by request and response)."""
    for number, name in enumerate(("model_name", "model_version", "id"), start=1):
        _scalar(message, name, number, F.TYPE_STRING)
    _parameters(message, full_name, 4)


def _tensor_message(parent: descriptor_pb2.DescriptorProto, parent_name: str, name: str) -> None:
    """A nested tensor message: name = 1, datatype = 2, shape = 3, parameters = 4, contents = 5."""
    tensor = parent.nested_type.add(name=name)
    _scalar(tensor, "name", 1, F.TYPE_STRING)
    _scalar(tensor, "datatype", 2, F.TYPE_STRING)
    tensor.field.add(name="shape", number=3, type=F.TYPE_INT64, label=F.LABEL_REPEATED)
    _parameters(tensor, f"{parent_name}.{name}", 4)
    tensor.field.add(name="contents", number=5, type=F.TYPE_MESSAGE, label=F.LABEL_OPTIONAL,
                     type_name=".inference.InferTensorContents")


def predict_response(
    model: str, version: int, outputs: dict[str, np.ndarray], signature: str = "serving_default"
) -> bytes:
    """A serialized PredictResponse as our server builds it (the framework ceiling's fixed answer)."""
    response = predict_pb2.PredictResponse()
    response.model_spec.name = model
    response.model_spec.version.value = version
    response.model_spec.signature_name = signature
    for name, array in outputs.items():
        response.outputs[name].CopyFrom(to_tensor_proto(array))
    return response.SerializeToString()
