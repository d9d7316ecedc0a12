"""Named regression tests for hostile requests the fuzz suite found, and the adversarial cases issue 10 lists."""

from __future__ import annotations

import os

import grpc
import numpy as np
import pytest

from service.api import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    tensor_pb2,
    types_pb2,
)
from service.rpc.codec import to_ndarray, to_tensor_proto
from service.rpc.status import MAX_DETAILS_CHARS
from service.validation import MAX_INPUTS
from tests.support.memory import MIB, peak_rss_bytes, reset_peak_rss, rss_bytes

X = np.array([[1.0, 2.0, 3.0]], np.float32)
BAD_NAMES = ["../affine", "affine/1", "/etc/passwd", "..", "a\x00b", "affine\x00", "x" * 100_000, ""]


def _predict(channel, request, metadata=()):
    return prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=30, metadata=metadata)


def _request(model="affine", inputs=None, **spec) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    for key, value in spec.items():
        if key == "version":
            request.model_spec.version.value = value
        else:
            setattr(request.model_spec, key, value)
    for name, value in (inputs if inputs is not None else {"x": to_tensor_proto(X)}).items():
        request.inputs[name].CopyFrom(value)
    return request


def _error(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


def _fill(dtype: int, dims: list[int], **values) -> tensor_pb2.TensorProto:
    tensor = tensor_pb2.TensorProto(dtype=dtype, **values)
    for size in dims:
        tensor.tensor_shape.dim.add(size=size)
    return tensor


ECHOES = [
    pytest.param(_request(version_label="L" * 100_000), (), grpc.StatusCode.INVALID_ARGUMENT, id="label"),
    pytest.param(_request(signature_name="\x00" * 50_000), (), grpc.StatusCode.INVALID_ARGUMENT, id="signature"),
    pytest.param(_request(inputs={"z" * 100_000: to_tensor_proto(X)}), (), grpc.StatusCode.INVALID_ARGUMENT,
                 id="input-name"),
    pytest.param(_request(), (("x-batchwise-variant", "v" * 7000),), grpc.StatusCode.NOT_FOUND, id="variant-header"),
]


@pytest.mark.parametrize(("request_", "metadata", "code"), ECHOES)
def test_regression_echoed_client_strings_are_shortened(channel, request_, metadata, code):
    """Errors quoting a huge client string overflowed the client's trailer limit ("Stream removed")."""
    error = _error(lambda: _predict(channel, request_, metadata))
    assert error.code() == code
    assert len(error.details()) <= MAX_DETAILS_CHARS
    assert "more characters" in error.details()


def test_regression_echoed_metadata_field_is_shortened(channel):
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["f" * 100_000])
    request.model_spec.name = "affine"
    error = _error(lambda: prediction_service_pb2_grpc.PredictionServiceStub(channel).GetModelMetadata(request))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert len(error.details()) <= MAX_DETAILS_CHARS


def test_regression_single_value_fill_allocates_nothing_before_validation(channel):
    """One float64 value declared to fill 2^24 elements allocated 128 MiB before the dtype check refused it."""
    pid = os.getpid()  # the server runs in this process
    _predict(channel, _request())
    baseline = rss_bytes(pid)
    if not reset_peak_rss(pid):
        pytest.skip("cannot reset VmHWM here")
    huge_fill = _fill(types_pb2.DT_DOUBLE, [2**24], double_val=[1.0])
    assert _error(lambda: _predict(channel, _request(inputs={"x": huge_fill}))).code() == (
        grpc.StatusCode.INVALID_ARGUMENT
    )
    rows_fill = _fill(types_pb2.DT_FLOAT, [2**22, 3], float_val=[1.0])  # 48 MiB if materialized
    assert _error(lambda: _predict(channel, _request(inputs={"x": rows_fill}))).code() == (
        grpc.StatusCode.RESOURCE_EXHAUSTED
    )
    assert peak_rss_bytes(pid) - baseline < 32 * MIB


def test_regression_string_fill_is_bounded_by_the_message_limit(channel):
    """One 2 KiB string declared to fill 65536 rows would have sent 128 MiB of strings to the model."""
    tensor = _fill(types_pb2.DT_STRING, [65536], string_val=[b"s" * 2048])
    error = _error(lambda: _predict(channel, _request("strings", {"text": tensor})))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "would fill 65536 elements" in error.details()
    small_fill = _fill(types_pb2.DT_STRING, [3], string_val=[b"ab"])
    response = _predict(channel, _request("strings", {"text": small_fill}))
    assert to_ndarray(response.outputs["length"], "length", max_elements=8).tolist() == [2, 2, 2]


def test_regression_too_many_inputs_are_refused_before_decoding(channel):
    inputs = {f"i{n}": to_tensor_proto(X) for n in range(MAX_INPUTS + 1)}
    error = _error(lambda: _predict(channel, _request(inputs=inputs)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"at most {MAX_INPUTS}" in error.details()


def test_nan_and_inf_are_served_as_ieee_values(channel):
    x = np.array([[np.nan, np.inf, -np.inf]], np.float32)
    response = _predict(channel, _request(inputs={"x": to_tensor_proto(x)}))
    y = to_ndarray(response.outputs["y"], "y", max_elements=8)
    assert np.isnan(y[0, 0]) and y[0, 1] == np.inf and y[0, 2] == -np.inf


def test_empty_batches_and_zero_size_dims_are_invalid(channel):
    for shape in [(0, 3), (1, 0), (0, 0)]:
        tensor = to_tensor_proto(np.zeros(shape, np.float32))
        assert _error(lambda t=tensor: _predict(channel, _request(inputs={"x": t}))).code() == (
            grpc.StatusCode.INVALID_ARGUMENT
        )


@pytest.mark.parametrize("name", BAD_NAMES, ids=lambda n: repr(n[:12]))
def test_hostile_model_names_are_invalid_on_every_method(channel, name):
    predict = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    metadata = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    metadata.model_spec.name = name
    status = get_model_status_pb2.GetModelStatusRequest()
    status.model_spec.name = name
    calls = [
        lambda: predict.Predict(_request(name), timeout=10),
        lambda: predict.GetModelMetadata(metadata, timeout=10),
        lambda: model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(status, timeout=10),
    ]
    for call in calls:
        error = _error(call)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
        assert len(error.details()) <= MAX_DETAILS_CHARS


@pytest.mark.parametrize(("version", "code"), [
    (0, grpc.StatusCode.INVALID_ARGUMENT),
    (-1, grpc.StatusCode.INVALID_ARGUMENT),
    (-(2**63), grpc.StatusCode.INVALID_ARGUMENT),
    (2**63 - 1, grpc.StatusCode.NOT_FOUND),
])
def test_extreme_versions(channel, version, code):
    assert _error(lambda: _predict(channel, _request(version=version))).code() == code
    status = get_model_status_pb2.GetModelStatusRequest()
    status.model_spec.name = "affine"
    status.model_spec.version.value = version
    error = _error(lambda: model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(status, timeout=10))
    assert error.code() == code
    _predict(channel, _request())  # the server is unharmed
