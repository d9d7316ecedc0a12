"""One data plane: a request through each of the four doors, for one model at the same moment, lands in one batch."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
from prometheus_client import CollectorRegistry

from service.api import grpc_service_pb2_grpc, prediction_service_pb2_grpc
from service.metrics import PROTOCOLS
from tests.support.repos import copy_models
from tests.support.requests import predict_request
from tests.support.server import ServerThread, server_settings
from tests.support.v2 import infer_request, outputs_of

# A batch timeout far longer than it takes to send four requests, and no idle timeout: the
# batcher runs when the timer fires, with everything that arrived meanwhile.
BATCHING = {"batch_timeout_ms": 3000, "batch_idle_timeout_ms": 0, "max_batch_size": 64}
ROWS = {"tfserving_grpc": 1, "tfserving_rest": 2, "v2_grpc": 3, "v2_rest": 4}


def _x(protocol: str) -> np.ndarray:
    return np.full((ROWS[protocol], 3), PROTOCOLS.index(protocol) + 1, np.float32)


def _tf_grpc(thread: ServerThread) -> np.ndarray:
    with grpc.insecure_channel(thread.target) as channel:
        reply = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
            predict_request("affine", {"x": _x("tfserving_grpc")}), timeout=30
        )
    return np.frombuffer(reply.outputs["y"].tensor_content, np.float32).reshape(-1, 3)


def _v2_grpc(thread: ServerThread) -> np.ndarray:
    with grpc.insecure_channel(thread.target) as channel:
        reply = grpc_service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(
            infer_request("affine", {"x": _x("v2_grpc")}, outputs=("y",)), timeout=30
        )
    return outputs_of(reply)["y"]


def _tf_rest(thread: ServerThread) -> np.ndarray:
    import requests

    reply = requests.post(
        thread.http_url + "/v1/models/affine:predict", json={"inputs": _x("tfserving_rest").tolist()}, timeout=30
    )
    return np.array(reply.json()["outputs"]["y"], np.float32)


def _v2_rest(thread: ServerThread) -> np.ndarray:
    import requests

    x = _x("v2_rest")
    body = {
        "inputs": [{"name": "x", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}],
        "outputs": [{"name": "y"}],
    }
    reply = requests.post(thread.http_url + "/v2/models/affine/infer", json=body, timeout=30).json()
    return np.array(reply["outputs"][0]["data"], np.float32).reshape(reply["outputs"][0]["shape"])


def test_a_request_through_each_door_lands_in_one_batch(model_repo, tmp_path):
    repo = copy_models(model_repo, tmp_path / "repo", "affine")
    registry = CollectorRegistry()
    settings = server_settings(repo, batching=BATCHING, metrics={"enabled": True, "port": 0})
    thread = ServerThread(settings, registry=registry).start()
    clients = {"tfserving_grpc": _tf_grpc, "tfserving_rest": _tf_rest, "v2_grpc": _v2_grpc, "v2_rest": _v2_rest}
    try:
        with ThreadPoolExecutor(len(clients)) as pool:
            futures = {protocol: pool.submit(client, thread) for protocol, client in clients.items()}
            outputs = {protocol: future.result(60) for protocol, future in futures.items()}
    finally:
        thread.stop()
    for protocol, y in outputs.items():
        np.testing.assert_allclose(y, _x(protocol) * 3 + 1, err_msg=protocol)  # each got its own rows back
    labels = {"model": "affine", "version": "2", "variant": "savedmodel", "signature": "serving_default"}
    assert registry.get_sample_value("batchwise_batch_size_rows_count", labels) == 1  # one model call...
    assert registry.get_sample_value("batchwise_batch_size_rows_sum", labels) == sum(ROWS.values())  # ...all rows
    for protocol in PROTOCOLS:
        counted = registry.get_sample_value(
            "batchwise_predict_requests_total",
            {"model": "affine", "version": "2", "variant": "savedmodel", "code": "OK", "protocol": protocol},
        )
        assert counted == 1, protocol
    routes = {
        "tfserving_rest": "/v1/models/{model}[/versions/{version}|/labels/{label}]:predict",
        "v2_rest": "/v2/models/{model}[/versions/{version}]/infer",
    }
    for protocol, route in routes.items():
        exchanges = {"route": route, "code": "200", "protocol": protocol}
        assert registry.get_sample_value("batchwise_http_requests_total", exchanges) == 1, protocol
