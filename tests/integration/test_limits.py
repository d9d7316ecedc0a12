"""Configured limits over real gRPC: message size, elements per tensor, rows per request, concurrent RPCs."""

from __future__ import annotations

import time

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service.api import prediction_service_pb2_grpc, tensor_pb2, types_pb2
from tests.support.repos import copy_models
from tests.support.requests import affine_request, predict_request
from tests.support.server import ServerThread, server_settings

MAX_MESSAGE_BYTES = 1 << 20
MAX_ROWS = 8
MAX_ELEMENTS = 4096
MAX_RPCS = 4
QUEUE_ROWS = 2
LIMITS = {
    "max_message_bytes": MAX_MESSAGE_BYTES,
    "max_rows_per_request": MAX_ROWS,
    "max_tensor_elements": MAX_ELEMENTS,
    "max_concurrent_rpcs": MAX_RPCS,
}


@pytest.fixture(scope="module")
def limited(model_repo, tmp_path_factory):
    """Small limits; mlp and strings wait 3 s for a batch (so their calls stay queued); strings queues 2 rows."""
    repo = copy_models(model_repo, tmp_path_factory.mktemp("limits") / "repo", "affine", "mlp", "strings")
    slow = {"mode": "fixed", "batch_timeout_ms": 3000, "batch_idle_timeout_ms": 0}
    models = {"mlp": {"batching": slow}, "strings": {"batching": {**slow, "max_queue_rows": QUEUE_ROWS}}}
    settings = server_settings(repo, server=LIMITS, models=models)
    thread = ServerThread(settings).start()
    channel = grpc.insecure_channel(thread.target, options=[("grpc.max_send_message_length", 64 << 20)])
    thread.channel = channel
    yield thread, prediction_service_pb2_grpc.PredictionServiceStub(channel)
    channel.close()
    thread.stop()


def _wait_in_flight(thread, count: int) -> None:
    deadline = time.monotonic() + 30
    while thread.server.calls.in_flight < count:
        assert time.monotonic() < deadline
        time.sleep(0.01)


def _refusal(stub, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        stub.Predict(request, timeout=30)
    return info.value


def test_message_over_the_limit_is_refused_by_the_transport(limited):
    thread, stub = limited
    accepted_before = thread.server.calls.accepted
    two_mib = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_content=bytes(2 << 20))
    big = predict_request("affine", {"x": two_mib})
    error = _refusal(stub, big)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max" in error.details()
    assert thread.server.calls.accepted == accepted_before  # refused before any handler (or allocation of ours)
    assert stub.Predict(affine_request(1), timeout=30).model_spec.version.value == 2


def test_declared_shape_over_the_element_limit_is_refused_before_allocation(limited):
    _, stub = limited
    tensor = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[1.0])
    tensor.tensor_shape.dim.add(size=2**40)
    tensor.tensor_shape.dim.add(size=3)
    error = _refusal(stub, predict_request("affine", {"x": tensor}))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f"over the limit of {MAX_ELEMENTS} elements per tensor" in error.details()


def test_real_tensor_over_the_element_limit_is_refused(limited):
    _, stub = limited
    error = _refusal(stub, affine_request(MAX_ELEMENTS // 3 + 1))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "elements per tensor" in error.details()


def test_rows_over_the_limit_are_refused(limited):
    _, stub = limited
    assert stub.Predict(affine_request(MAX_ROWS), timeout=30).model_spec.name == "affine"
    error = _refusal(stub, affine_request(MAX_ROWS + 1))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f"{MAX_ROWS + 1} rows is over the limit of {MAX_ROWS} rows per request" in error.details()


def test_concurrent_rpcs_over_the_cap_are_refused_at_once(limited):
    thread, stub = limited
    held = predict_request("mlp", {"features": np.ones((1, 4), np.float32)})
    in_flight = [stub.Predict.future(held, timeout=60) for _ in range(MAX_RPCS)]
    _wait_in_flight(thread, MAX_RPCS)
    error = _refusal(stub, affine_request(1))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "Concurrent RPC limit exceeded" in error.details()
    # Health checks count too: the cap is a backstop, sized far above normal concurrency.
    with pytest.raises(grpc.RpcError) as probe:
        health_pb2_grpc.HealthStub(thread.channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert probe.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert not any(f.done() for f in in_flight)  # refused while the held calls were still waiting for their batch
    assert all(f.result().model_spec.name == "mlp" for f in in_flight)
    assert stub.Predict(affine_request(1), timeout=30).model_spec.version.value == 2


def test_a_full_batch_queue_sheds_load_with_unavailable_and_recovers_at_once(limited):
    thread, stub = limited
    one_row = predict_request("strings", {"text": np.array([b"queued"], dtype=object)})
    queued = [stub.Predict.future(one_row, timeout=60) for _ in range(QUEUE_ROWS)]
    _wait_in_flight(thread, QUEUE_ROWS)
    error = _refusal(stub, one_row)
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert f"queue is full (max_queue_rows={QUEUE_ROWS}" in error.details()
    assert not any(f.done() for f in queued)  # refused at once, not after the queued batch ran
    assert all(f.result().model_spec.name == "strings" for f in queued)
    assert stub.Predict(one_row, timeout=30).model_spec.name == "strings"  # the queue drained: admitted again
