"""The v2 gRPC door gets what Predict gets: limits, malformed-message handling, metrics, drain, reflection, batching."""

from __future__ import annotations

import asyncio

import grpc
import numpy as np
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client import CollectorRegistry

from service.api import grpc_service_pb2_grpc, prediction_service_pb2_grpc
from service.rpc.drain import DRAINING_MESSAGE
from tests.support.repos import copy_models
from tests.support.requests import predict_request
from tests.support.server import ServerThread, server_settings, wait_for
from tests.support.v2 import infer_request, outputs_of

MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"
MAX_MESSAGE_BYTES = 1 << 20
MAX_ELEMENTS = 4096
X = np.ones((1, 3), np.float32)


@pytest.fixture(scope="module")
def repo(model_repo, tmp_path_factory):
    return copy_models(model_repo, tmp_path_factory.mktemp("v2-protections") / "repo", "affine")


@pytest.fixture(scope="module")
def metered(repo):
    """Small message and element limits, metrics on a registry of its own."""
    limits = {"max_message_bytes": MAX_MESSAGE_BYTES, "max_tensor_elements": MAX_ELEMENTS}
    registry = CollectorRegistry()
    settings = server_settings(repo, server=limits, metrics={"enabled": True, "port": 0})
    thread = ServerThread(settings, registry=registry).start()
    thread.registry = registry
    channel = grpc.insecure_channel(thread.target, options=[("grpc.max_send_message_length", 64 << 20)])
    thread.stub = grpc_service_pb2_grpc.GRPCInferenceServiceStub(channel)
    thread.channel = channel
    yield thread
    channel.close()
    thread.stop()


def refusal(call, request, **kwargs) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=30, **kwargs)
    return info.value


def test_message_over_the_limit_is_refused_by_the_transport(metered):
    accepted_before = metered.server.calls.accepted
    big = infer_request("affine", {"x": np.ones((100_000, 3), np.float32)})
    error = refusal(metered.stub.ModelInfer, big)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in error.details()
    assert metered.server.calls.accepted == accepted_before  # never reached a handler


def test_declared_shape_over_the_element_limit_is_refused_before_allocation(metered):
    request = infer_request("affine", {"x": X})
    request.inputs[0].shape[:] = [2**40, 3]
    error = refusal(metered.stub.ModelInfer, request)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f"input 'x': shape dimension 0 = {2**40} is over the limit of {MAX_ELEMENTS} elements" in error.details()


def test_unparseable_message_is_an_invalid_argument(metered):
    error = refusal(metered.channel.unary_unary(MODEL_INFER), b"\xff\xff\xff")
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "the request message does not parse" in error.details()


def test_v2_calls_are_counted_with_their_protocol(metered):
    value = metered.registry.get_sample_value
    served = {"model": "affine", "version": "2", "variant": metered.server.manager.resolve("affine").variant}
    ok = {**served, "code": "OK", "protocol": "v2_grpc"}
    before = value("batchwise_predict_requests_total", ok)
    metered.stub.ModelInfer(infer_request("affine", {"x": X}), timeout=30)
    refusal(metered.stub.ModelInfer, infer_request("affine", {"x": X.astype(np.float64)}))
    assert value("batchwise_predict_requests_total", ok) == before + 1
    bad = {**served, "code": "INVALID_ARGUMENT", "protocol": "v2_grpc"}
    assert value("batchwise_predict_requests_total", bad) >= 1
    latency = {**served, "signature": "serving_default", "protocol": "v2_grpc"}
    assert value("batchwise_request_latency_seconds_count", latency) >= 1
    assert value("batchwise_grpc_requests_total", {"method": MODEL_INFER, "code": "OK", "protocol": "v2_grpc"}) >= 1
    assert value("batchwise_inflight_requests") == 0


def test_reflection_lists_the_v2_service(metered):
    stub = reflection_pb2_grpc.ServerReflectionStub(metered.channel)
    replies = list(
        stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10)
    )
    services = {service.name for service in replies[0].list_services_response.service}
    assert "inference.GRPCInferenceService" in services
    symbol = reflection_pb2.ServerReflectionRequest(file_containing_symbol="inference.GRPCInferenceService")
    described = list(stub.ServerReflectionInfo(iter([symbol]), timeout=10))
    assert described[0].file_descriptor_response.file_descriptor_proto  # clients (grpcurl) can build requests


@pytest.fixture()
def slow_server(repo, tmp_path):
    """Batches wait up to 4 s for a second row (max_batch_size 2), with metrics, so that two calls merge."""
    slow = {"mode": "fixed", "max_batch_size": 2, "batch_timeout_ms": 4000, "batch_idle_timeout_ms": 0}
    registry = CollectorRegistry()
    settings = server_settings(repo, batching=slow, metrics={"enabled": True, "port": 0})
    thread = ServerThread(settings, registry=registry).start()
    thread.registry = registry
    yield thread
    if not thread.server._stopping:
        thread.stop()




def test_a_v2_call_and_a_predict_merge_into_one_batch(slow_server):
    with grpc.insecure_channel(slow_server.target) as channel:
        v2 = grpc_service_pb2_grpc.GRPCInferenceServiceStub(channel)
        tf = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        first = v2.ModelInfer.future(infer_request("affine", {"x": X}), timeout=60)
        second = tf.Predict.future(predict_request("affine", {"x": X * 2}), timeout=60)
        np.testing.assert_allclose(outputs_of(first.result())["y"], X * 3 + 1)
        assert second.result().model_spec.version.value == 2
    value = slow_server.registry.get_sample_value
    variant = slow_server.server.manager.resolve("affine").variant
    labels = {"model": "affine", "version": "2", "variant": variant, "signature": "serving_default"}
    # Warm-up batches run before serving and are not observed: this is the one batch of the two calls.
    assert value("batchwise_batch_size_rows_count", labels) == 1
    assert value("batchwise_batch_size_rows_sum", labels) == 2
    for protocol in ("v2_grpc", "tfserving_grpc"):
        assert value("batchwise_request_latency_seconds_count", {**labels, "protocol": protocol}) == 1


def test_drain_finishes_accepted_v2_calls_and_refuses_new_ones(slow_server):
    channel = grpc.insecure_channel(slow_server.target)
    stub = grpc_service_pb2_grpc.GRPCInferenceServiceStub(channel)
    queued = stub.ModelInfer.future(infer_request("affine", {"x": X}), timeout=60)  # waits for a second row
    wait_for(lambda: slow_server.server.calls.in_flight == 1)
    stopping = asyncio.run_coroutine_threadsafe(slow_server.server.stop(30), slow_server.loop)
    wait_for(lambda: slow_server.server._stopping)
    error = refusal(stub.ModelInfer, infer_request("affine", {"x": X}))
    assert error.code() == grpc.StatusCode.UNAVAILABLE and error.details() == DRAINING_MESSAGE
    assert not queued.done()
    assert outputs_of(queued.result()).keys() == {"y", "total"}
    stopping.result(60)
    calls = slow_server.server.calls
    assert (calls.accepted, calls.completed, calls.refused) == (1, 1, 1)
    channel.close()
