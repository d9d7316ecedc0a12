"""Predict, GetModelMetadata and GetModelStatus through real gRPC against tiny real SavedModels."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from service.api import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    types_pb2,
)
from service.rpc.codec import to_ndarray, to_tensor_proto

X = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=np.float32)


def _predict(channel, model="affine", inputs=None, **spec):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    for key, value in spec.items():
        if key == "version":
            request.model_spec.version.value = value
        elif key == "output_filter":
            request.output_filter.extend(value)
        else:
            setattr(request.model_spec, key, value)
    for name, value in (inputs if inputs is not None else {"x": X}).items():
        tensor = to_tensor_proto(value) if isinstance(value, np.ndarray) else value
        request.inputs[name].CopyFrom(tensor)
    return prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=30)


def _outputs(response):
    return {name: to_ndarray(t, name, max_elements=10**7) for name, t in response.outputs.items()}


def test_latest_version_serves_by_default(channel):
    response = _predict(channel)
    assert response.model_spec.version.value == 2
    assert response.model_spec.signature_name == "serving_default"
    np.testing.assert_allclose(_outputs(response)["y"], X * 3 + 1)
    np.testing.assert_allclose(_outputs(response)["total"], (X * 3 + 1).sum(axis=1))


def test_specific_version_label_and_signature(channel):
    assert _predict(channel, version=1).model_spec.version.value == 1
    np.testing.assert_allclose(_outputs(_predict(channel, version=1))["y"], X * 2 + 1)
    assert _predict(channel, version_label="stable").model_spec.version.value == 1
    response = _predict(channel, signature_name="total_only")
    assert set(response.outputs) == {"total"}
    assert response.model_spec.signature_name == "total_only"


def test_output_filter(channel):
    response = _predict(channel, output_filter=["total"])
    assert set(response.outputs) == {"total"}


def test_typed_value_fields_are_accepted(channel):
    tensor = to_tensor_proto(X)
    tensor.ClearField("tensor_content")
    tensor.float_val.extend(X.ravel().tolist())
    np.testing.assert_allclose(_outputs(_predict(channel, inputs={"x": tensor}))["y"], X * 3 + 1)


def test_string_inputs_and_outputs(channel):
    text = np.array([b"abc", b"hello"], dtype=object)
    outputs = _outputs(_predict(channel, model="strings", inputs={"text": text}))
    assert outputs["length"].tolist() == [3, 5]
    assert outputs["upper"].tolist() == [b"ABC", b"HELLO"]


def test_metadata_returns_signature_defs(channel):
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "affine"
    response = prediction_service_pb2_grpc.PredictionServiceStub(channel).GetModelMetadata(request, timeout=10)
    assert response.model_spec.version.value == 2
    signatures = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signatures)
    serving = signatures.signature_def["serving_default"]
    assert serving.inputs["x"].dtype == types_pb2.DT_FLOAT
    assert [d.size for d in serving.inputs["x"].tensor_shape.dim] == [-1, 3]
    assert set(serving.outputs) == {"y", "total"}
    assert set(signatures.signature_def) == {"serving_default", "total_only"}


def test_status_lists_every_version(channel):
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "affine"
    response = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(request, timeout=10)
    states = {s.version: s.state for s in response.model_version_status}
    available = get_model_status_pb2.ModelVersionStatus.AVAILABLE
    assert states == {1: available, 2: available}


ERROR_CASES = [
    pytest.param({"model": "nope"}, grpc.StatusCode.NOT_FOUND, "'nope' is not served", id="unknown-model"),
    pytest.param({"version": 9}, grpc.StatusCode.NOT_FOUND, "version 9 is not available", id="unknown-version"),
    pytest.param({"version_label": "gold"}, grpc.StatusCode.INVALID_ARGUMENT, "no label 'gold'", id="unknown-label"),
    pytest.param({"signature_name": "nah"}, grpc.StatusCode.INVALID_ARGUMENT, "no signature 'nah'", id="bad-signature"),
    pytest.param({"model": "../etc"}, grpc.StatusCode.INVALID_ARGUMENT, "not a valid model name", id="traversal"),
    pytest.param({"inputs": {"z": X}}, grpc.StatusCode.INVALID_ARGUMENT, "unknown input 'z'", id="unknown-input"),
    pytest.param({"inputs": {}}, grpc.StatusCode.INVALID_ARGUMENT, "missing input 'x'", id="missing-input"),
    pytest.param(
        {"inputs": {"x": X.astype(np.float64)}}, grpc.StatusCode.INVALID_ARGUMENT,
        "input 'x' expects dtype float32 but got float64", id="dtype",
    ),
    pytest.param(
        {"inputs": {"x": X[:, :2]}}, grpc.StatusCode.INVALID_ARGUMENT,
        "input 'x' expects shape [-1, 3] but got [2, 2]", id="fixed-dim",
    ),
    pytest.param(
        {"inputs": {"x": X.ravel()}}, grpc.StatusCode.INVALID_ARGUMENT, "input 'x' expects rank 2", id="rank",
    ),
    pytest.param(
        {"output_filter": ["nope"]}, grpc.StatusCode.INVALID_ARGUMENT, "unknown output 'nope'", id="output-filter",
    ),
]


@pytest.mark.parametrize(("kwargs", "code", "message"), ERROR_CASES)
def test_errors_have_the_right_status_and_message(channel, kwargs, code, message):
    with pytest.raises(grpc.RpcError) as info:
        _predict(channel, **kwargs)
    assert info.value.code() == code
    assert message in info.value.details()
    # The server is unharmed: a valid request right after still succeeds.
    assert _predict(channel).model_spec.version.value == 2


def test_malformed_tensor_is_invalid_argument(channel):
    tensor = to_tensor_proto(X)
    tensor.tensor_content = tensor.tensor_content[:-4]
    with pytest.raises(grpc.RpcError) as info:
        _predict(channel, inputs={"x": tensor})
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "'x'" in info.value.details()


def test_status_of_unknown_model_is_not_found(channel):
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "nope"
    with pytest.raises(grpc.RpcError) as info:
        model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(request, timeout=10)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
