"""SignatureSpec -> TF Serving's SignatureDefMap, as GetModelMetadata returns it."""

from __future__ import annotations

from collections.abc import Mapping

from service.api import get_model_metadata_pb2, meta_graph_pb2
from service.rpc.codec import datatype_of
from service.runtime.base import SignatureSpec, TensorSpec


def signature_def_map(signatures: Mapping[str, SignatureSpec]) -> get_model_metadata_pb2.SignatureDefMap:
    """Build the SignatureDefMap for every signature, in TF Serving's format."""
    result = get_model_metadata_pb2.SignatureDefMap()
    for name, spec in signatures.items():
        signature = result.signature_def[name]
        signature.method_name = spec.method_name
        for key, tensor in spec.inputs.items():
            _fill(signature.inputs[key], tensor, f"{name}_{key}:0")
        for key, tensor in spec.outputs.items():
            _fill(signature.outputs[key], tensor, f"{name}_{key}:0")
    return result


def _fill(info: meta_graph_pb2.TensorInfo, spec: TensorSpec, tensor_name: str) -> None:
    info.name = tensor_name
    info.dtype = datatype_of(spec.dtype)
    if spec.shape is None:
        info.tensor_shape.unknown_rank = True
        return
    for dim in spec.shape:
        info.tensor_shape.dim.add(size=-1 if dim is None else dim)


def signature_def_json(signatures: Mapping[str, SignatureSpec]) -> dict:
    """The SignatureDefMap as TF Serving's REST metadata API writes it (proto3 JSON, field names as in the proto)."""
    from google.protobuf import json_format

    return json_format.MessageToDict(
        signature_def_map(signatures), preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
