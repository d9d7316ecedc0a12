"""The v2 (Open Inference Protocol) gRPC door over real gRPC, with our generated stubs: contents, datatypes, errors."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from service.api import grpc_service_pb2 as pb
from service.api import grpc_service_pb2_grpc
from tests.support.repos import copy_models
from tests.support.server import ServerThread, server_settings
from tests.support.v2 import infer_request, outputs_of

X = np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 4.0]], np.float32)
# name -> a two-row batch of that dtype, at the edges of its range where it has one.
DTYPE_INPUTS = {
    "b": np.array([[True, False], [False, True]]),
    "u8": np.array([[0, 255], [7, 1]], np.uint8),
    "u16": np.array([[0, 65535], [7, 1]], np.uint16),
    "u32": np.array([[0, 2**32 - 1], [7, 1]], np.uint32),
    "u64": np.array([[0, 2**64 - 1], [7, 1]], np.uint64),
    "i8": np.array([[-128, 127], [7, -1]], np.int8),
    "i16": np.array([[-(2**15), 2**15 - 1], [7, -1]], np.int16),
    "i32": np.array([[-(2**31), 2**31 - 1], [7, -1]], np.int32),
    "i64": np.array([[-(2**63), 2**63 - 1], [7, -1]], np.int64),
    "f16": np.array([[0.5, -65504.0], [1e-3, 2.0]], np.float16),
    "f32": np.array([[0.5, -3.4e38], [1e-30, 2.0]], np.float32),
    "f64": np.array([[0.5, -1.7e308], [1e-300, 2.0]], np.float64),
}


TYPED_INPUTS = {name: array for name, array in DTYPE_INPUTS.items() if name != "f16"}  # FP16 has no typed field


def export_dtypes(path) -> None:
    """`serving_default`: one [None, 2] input per numeric dtype -> `<name>_out`, its identity; `typed`: the
    same without f16; `to_half`: f32 -> half, f32 cast to float16."""
    import tensorflow as tf

    def identity(inputs):
        specs = [tf.TensorSpec([None, 2], tf.as_dtype(a.dtype), name=n) for n, a in inputs.items()]
        return tf.function(
            lambda *ts: {f"{n}_out": tf.identity(t) for n, t in zip(inputs, ts, strict=True)}, input_signature=specs
        )

    module = tf.Module()
    module.serve, module.typed = identity(DTYPE_INPUTS), identity(TYPED_INPUTS)
    module.to_half = tf.function(
        lambda f32: {"half": tf.cast(f32, tf.float16)},
        input_signature=[tf.TensorSpec([None, 2], tf.float32, name="f32")],
    )
    signatures = {"serving_default": module.serve, "typed": module.typed, "to_half": module.to_half}
    tf.saved_model.save(module, str(path), signatures=signatures)


@pytest.fixture(scope="module")
def v2_server(model_repo, tmp_path_factory):
    repo = copy_models(model_repo, tmp_path_factory.mktemp("v2") / "repo", "affine", "strings")
    export_dtypes(repo / "dtypes" / "1")
    (repo / "affine" / "3").mkdir()  # fails to load: state END with an error
    (repo / "affine" / "3" / "saved_model.pb").write_bytes(b"not a SavedModel")
    settings = server_settings(repo, models={"affine": {"version_policy": "all"}}, server={"max_tensor_elements": 4096})
    thread = ServerThread(settings).start()
    yield thread
    thread.stop()


@pytest.fixture()
def stub(v2_server):
    with grpc.insecure_channel(v2_server.target) as channel:
        yield grpc_service_pb2_grpc.GRPCInferenceServiceStub(channel)


def refused(call, request, **kwargs) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=30, **kwargs)
    return info.value


def test_server_live_ready_and_metadata(stub):
    assert stub.ServerLive(pb.ServerLiveRequest(), timeout=10).live
    assert stub.ServerReady(pb.ServerReadyRequest(), timeout=10).ready
    metadata = stub.ServerMetadata(pb.ServerMetadataRequest(), timeout=10)
    assert metadata.name == "batchwise" and metadata.version


def test_model_readiness_follows_the_manager(stub):
    def ready(name, version=""):
        return stub.ModelReady(pb.ModelReadyRequest(name=name, version=version), timeout=10).ready

    assert ready("affine") and ready("affine", "1") and ready("affine", "2")
    assert not ready("affine", "3")  # tracked by the manager, but its load failed (END)
    assert not ready("affine", "9")
    assert not ready("nope")
    error = refused(stub.ModelReady, pb.ModelReadyRequest(name="affine", version="latest"))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "version: expected a positive integer as a string" in error.details()


def test_model_metadata_describes_the_serving_signature(stub):
    metadata = stub.ModelMetadata(pb.ModelMetadataRequest(name="affine"), timeout=10)
    assert metadata.name == "affine" and list(metadata.versions) == ["1", "2"]
    assert metadata.platform == "tensorflow_savedmodel"
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.inputs] == [("x", "FP32", [-1, 3])]
    assert sorted((t.name, t.datatype, list(t.shape)) for t in metadata.outputs) == [
        ("total", "FP32", [-1]),
        ("y", "FP32", [-1, 3]),
    ]
    strings = stub.ModelMetadata(pb.ModelMetadataRequest(name="strings", version="1"), timeout=10)
    assert [(t.name, t.datatype) for t in strings.inputs] == [("text", "BYTES")]
    error = refused(stub.ModelMetadata, pb.ModelMetadataRequest(name="nope"))
    assert error.code() == grpc.StatusCode.NOT_FOUND and "name: model 'nope' is not served" in error.details()


@pytest.mark.parametrize("raw", [True, False], ids=["raw", "typed"])
def test_infer_answers_in_the_encoding_it_was_asked_in(stub, raw):
    response = stub.ModelInfer(infer_request("affine", {"x": X}, raw=raw, request_id="req-7"), timeout=30)
    assert (response.model_name, response.model_version, response.id) == ("affine", "2", "req-7")
    assert bool(response.raw_output_contents) is raw
    assert all(t.HasField("contents") is not raw for t in response.outputs)
    outputs = outputs_of(response)
    np.testing.assert_allclose(outputs["y"], X * 3 + 1)
    np.testing.assert_allclose(outputs["total"], (X * 3 + 1).sum(axis=1))


def test_requested_outputs_and_version(stub):
    response = stub.ModelInfer(infer_request("affine", {"x": X}, outputs=("total",), version="1"), timeout=30)
    assert response.model_version == "1"
    assert [t.name for t in response.outputs] == ["total"]
    np.testing.assert_allclose(outputs_of(response)["total"], (X * 2 + 1).sum(axis=1))
    error = refused(stub.ModelInfer, infer_request("affine", {"x": X}, outputs=("nope",)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "unknown output 'nope'" in error.details()


@pytest.mark.parametrize("raw", [True, False], ids=["raw", "typed"])
def test_bytes_in_and_out(stub, raw):
    text = np.array([b"hello", b"", b"\x00\xffv2"], dtype=object)
    outputs = outputs_of(stub.ModelInfer(infer_request("strings", {"text": text}, raw=raw), timeout=30))
    assert outputs["upper"].tolist() == [b"HELLO", b"", b"\x00\xffV2"]
    assert outputs["length"].tolist() == [5, 0, 4]


def test_every_numeric_datatype_round_trips_raw(stub):
    outputs = outputs_of(stub.ModelInfer(infer_request("dtypes", DTYPE_INPUTS), timeout=30))
    for name, array in DTYPE_INPUTS.items():
        assert outputs[f"{name}_out"].dtype == array.dtype.newbyteorder("<"), name
        np.testing.assert_array_equal(outputs[f"{name}_out"], array, err_msg=name)


def with_signature(request: pb.ModelInferRequest, signature: str) -> pb.ModelInferRequest:
    request.parameters["signature_name"].string_param = signature
    return request


def test_every_typed_datatype_round_trips(stub):
    response = stub.ModelInfer(with_signature(infer_request("dtypes", TYPED_INPUTS, raw=False), "typed"), timeout=30)
    assert not response.raw_output_contents
    outputs = outputs_of(response)
    for name, array in TYPED_INPUTS.items():
        np.testing.assert_array_equal(outputs[f"{name}_out"], array, err_msg=name)


def test_fp16_travels_only_raw(stub):
    request = infer_request("dtypes", TYPED_INPUTS, raw=False)
    request.inputs.add(name="f16", datatype="FP16", shape=[2, 2]).contents.fp32_contents.extend([0.5, 1.0, 2.0, 3.0])
    error = refused(stub.ModelInfer, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "input 'f16': datatype FP16 carries its values in raw_input_contents" in error.details()
    # A typed request whose answer holds FP16 is answered raw, for every output (the protocol: all or none).
    f32 = np.array([[0.5, 2.0]], np.float32)
    response = stub.ModelInfer(with_signature(infer_request("dtypes", {"f32": f32}, raw=False), "to_half"), timeout=30)
    assert len(response.raw_output_contents) == 1
    np.testing.assert_array_equal(outputs_of(response)["half"], f32.astype(np.float16))


def test_typed_values_out_of_range_are_refused(stub):
    request = with_signature(infer_request("dtypes", TYPED_INPUTS, raw=False, outputs=("u8_out",)), "typed")
    u8 = next(t for t in request.inputs if t.name == "u8")
    u8.contents.uint_contents[1] = 256
    error = refused(stub.ModelInfer, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "input 'u8': contents.uint_contents value 256 is out of range [0, 255] for UINT8" in error.details()


@pytest.mark.parametrize(
    ("request_of", "code", "message"),
    [
        (lambda: infer_request("nope", {"x": X}), "NOT_FOUND", "model_name: model 'nope' is not served"),
        (
            lambda: infer_request("affine", {"x": X}, version="9"),
            "NOT_FOUND",
            "model_version: model 'affine' version 9 is not",
        ),
        (lambda: infer_request("affine", {"x": X}, version="v1"), "INVALID_ARGUMENT", "model_version: expected"),
        (lambda: infer_request("affine", {"x": X[:, :2]}), "INVALID_ARGUMENT", "input 'x' expects shape [-1, 3]"),
        (
            lambda: infer_request("affine", {"x": X.astype(np.float64)}),
            "INVALID_ARGUMENT",
            "input 'x' expects dtype float32 but got float64",
        ),
        (lambda: infer_request("affine", {"z": X}), "INVALID_ARGUMENT", "unknown input 'z'"),
        (
            lambda: infer_request("affine", {"x": np.ones((2000, 3), np.float32)}),
            "RESOURCE_EXHAUSTED",
            "over the limit of 4096 elements",
        ),
    ],
    ids=["unknown-model", "unknown-version", "bad-version", "shape", "dtype", "name", "elements"],
)
def test_errors_name_the_field_and_what_was_expected(stub, request_of, code, message):
    error = refused(stub.ModelInfer, request_of())
    assert error.code() == getattr(grpc.StatusCode, code), error.details()
    assert message in error.details()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: r.raw_input_contents.append(b""), "raw_input_contents: has 2 entries but the request has 1 inputs"),
        (lambda r: r.raw_input_contents.__setitem__(0, b"\x00" * 5), "raw content has 5 bytes but shape [2, 3]"),
        (lambda r: setattr(r.inputs[0], "datatype", "BF16"), "input 'x': datatype 'BF16' is not supported"),
        (lambda r: r.inputs[0].shape.__setitem__(0, -2), "input 'x': shape [-2, 3] has dimension 0 = -2"),
        (lambda r: r.inputs[0].contents.fp32_contents.append(1.0), "has both contents and a raw_input_contents"),
        (
            lambda r: (r.inputs.add(name="x", datatype="FP32", shape=[0]), r.raw_input_contents.append(b"")),
            "input 'x': appears more than once",
        ),
    ],
    ids=["raw-count", "raw-size", "datatype", "negative-dim", "raw-and-typed", "duplicate"],
)
def test_malformed_tensors_are_invalid_arguments(stub, mutate, message):
    request = infer_request("affine", {"x": X})
    mutate(request)
    error = refused(stub.ModelInfer, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in error.details()


def test_variant_metadata_key_chooses_the_variant(stub):
    request = infer_request("affine", {"x": X})
    response, _ = stub.ModelInfer.with_call(request, timeout=30, metadata=(("x-batchwise-variant", "savedmodel"),))
    np.testing.assert_allclose(outputs_of(response)["y"], X * 3 + 1)
    error = refused(stub.ModelInfer, request, metadata=(("x-batchwise-variant", "int8"),))
    assert error.code() == grpc.StatusCode.NOT_FOUND and "int8" in error.details()
