"""The CLI server as a subprocess: health flips only after load, and SIGTERM drains in-flight calls."""

from __future__ import annotations

import signal
import threading
import time

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from loadtests.servers import free_port, start_server
from service.api import predict_pb2, prediction_service_pb2_grpc
from service.rpc.codec import to_tensor_proto

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def _request() -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "affine"
    request.inputs["x"].CopyFrom(to_tensor_proto(np.ones((1, 3), np.float32)))
    return request


def _watch_health(target: str, seen: list[int], stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            with grpc.insecure_channel(target) as channel:
                for reply in health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(), timeout=120):
                    seen.append(reply.status)
                    if reply.status == SERVING:
                        return
        except grpc.RpcError:
            time.sleep(0.05)


@pytest.mark.slow
def test_health_is_serving_only_after_models_load(model_repo, tmp_path):
    port = free_port()
    target = f"127.0.0.1:{port}"
    seen: list[int] = []
    stop = threading.Event()
    watcher = threading.Thread(target=_watch_health, args=(target, seen, stop), daemon=True)
    watcher.start()
    proc = start_server(["--repository.path", str(model_repo)], port=port, log_path=tmp_path / "log")
    try:
        watcher.join(180)
        assert seen[0] == NOT_SERVING, seen  # the port is up before the models are
        assert seen[-1] == SERVING
        with grpc.insecure_channel(target) as channel:
            response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(_request(), timeout=30)
        assert response.model_spec.version.value == 2
    finally:
        stop.set()
        assert proc.stop(60) == 0


@pytest.mark.slow
def test_sigterm_lets_queued_and_running_calls_finish(model_repo, tmp_path):
    # A long batch timeout keeps the calls queued in the batcher when SIGTERM arrives.
    args = ["--repository.path", str(model_repo), "--batching.mode", "fixed",
            "--batching.batch-timeout-ms", "1500", "--batching.max-batch-size", "64", "--server.grace-period-s", "20"]
    proc = start_server(args, log_path=tmp_path / "log").wait_serving()
    channel = grpc.insecure_channel(proc.target)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    futures = [stub.Predict.future(_request(), timeout=60) for _ in range(8)]
    time.sleep(0.5)
    proc.signal(signal.SIGTERM)
    results = [f.result() for f in futures]  # raises if any accepted call failed
    assert all(r.model_spec.version.value == 2 for r in results)
    assert proc.wait(60) == 0
    with pytest.raises(grpc.RpcError) as info:
        stub.Predict(_request(), timeout=5)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    channel.close()
