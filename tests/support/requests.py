"""Predict requests for the test models, from arrays or ready TensorProtos."""

from __future__ import annotations

import numpy as np

from service.api import predict_pb2, tensor_pb2
from service.rpc.codec import to_tensor_proto


def predict_request(model: str, inputs: dict[str, np.ndarray | tensor_pb2.TensorProto]) -> predict_pb2.PredictRequest:
    """A PredictRequest for `model`; arrays are encoded with the codec, protos copied as they are."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(value if isinstance(value, tensor_pb2.TensorProto) else to_tensor_proto(value))
    return request


def affine_request(rows: int = 1) -> predict_pb2.PredictRequest:
    """affine's serving_default with `rows` rows of ones (y = 3x + 1 on version 2)."""
    return predict_request("affine", {"x": np.ones((rows, 3), np.float32)})
