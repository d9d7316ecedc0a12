"""Graceful drain, in-process: health goes NOT_SERVING, new calls get UNAVAILABLE, queued calls finish."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service.api import prediction_service_pb2_grpc
from service.rpc.drain import DRAINING_MESSAGE
from tests.support.requests import affine_request
from tests.support.server import wait_for

NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVING = health_pb2.HealthCheckResponse.SERVING






def test_drain_refuses_new_calls_and_finishes_queued_ones(slow_server):
    channel = grpc.insecure_channel(slow_server.target)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    health = health_pb2_grpc.HealthStub(channel)
    queued = stub.Predict.future(affine_request(), timeout=60)
    wait_for(lambda: slow_server.server.calls.in_flight == 1)
    watch = health.Watch(health_pb2.HealthCheckRequest(), timeout=60)
    assert next(watch).status == SERVING

    stopping = asyncio.run_coroutine_threadsafe(slow_server.server.stop(30), slow_server.loop)
    assert next(watch).status == NOT_SERVING
    with pytest.raises(grpc.RpcError) as refused:
        stub.Predict(affine_request(), timeout=10)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert refused.value.details() == DRAINING_MESSAGE
    assert health.Check(health_pb2.HealthCheckRequest(), timeout=10).status == NOT_SERVING  # probes still answered
    assert not queued.done()  # all of the above happened while the accepted call was still queued

    assert queued.result().model_spec.version.value == 2
    assert list(watch) == []  # regression: the Watch stream ends (OK) instead of holding the drain until grace
    stopping.result(60)
    calls = slow_server.server.calls
    assert (calls.accepted, calls.completed, calls.refused) == (1, 1, 1)
    channel.close()
