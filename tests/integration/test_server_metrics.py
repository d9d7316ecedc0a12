"""Metric families after known traffic through a real server and real gRPC, each test with a fresh registry."""

from __future__ import annotations

import logging
import shutil
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from service.api import get_model_metadata_pb2, predict_pb2, prediction_service_pb2_grpc
from service.rpc.codec import to_tensor_proto
from tests.support.server import ServerThread, server_settings

X = np.ones((2, 3), np.float32)
PREDICT = "/tensorflow.serving.PredictionService/Predict"
CHECK = "/grpc.health.v1.Health/Check"


@pytest.fixture()
def repo(model_repo, tmp_path):
    """affine/2 (a real SavedModel) and broken/1 (fails to load)."""
    shutil.copytree(model_repo / "affine" / "2", tmp_path / "affine" / "2")
    (tmp_path / "broken" / "1").mkdir(parents=True)
    (tmp_path / "broken" / "1" / "saved_model.pb").write_bytes(b"not a SavedModel")
    return tmp_path


def start(repo, registry=None, **logging_settings) -> ServerThread:
    """A metered server; without `registry`, its own new one with the process collectors."""
    settings = server_settings(repo, metrics={"enabled": True, "port": 0}, logging=logging_settings)
    return ServerThread(settings, registry=registry).start()


def predict(channel, model="affine", x=X, metadata=None, **spec):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    if "version" in spec:
        request.model_spec.version.value = spec["version"]
    request.inputs["x"].CopyFrom(to_tensor_proto(x))
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    return stub.Predict.with_call(request, timeout=30, metadata=metadata)


def failing(call, *args, **kwargs) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(*args, **kwargs)
    return info.value


def test_families_after_known_traffic(repo):
    registry = CollectorRegistry()
    thread = start(repo, registry)
    value = registry.get_sample_value
    try:
        variant = thread.server.manager.resolve("affine").variant
        with grpc.insecure_channel(thread.target) as channel:
            for _ in range(3):
                predict(channel)
            assert failing(predict, channel, version=9).code() == grpc.StatusCode.NOT_FOUND
            assert failing(predict, channel, model="nope").code() == grpc.StatusCode.NOT_FOUND
            assert failing(predict, channel, x=X.astype(np.float64)).code() == grpc.StatusCode.INVALID_ARGUMENT
            health = health_pb2_grpc.HealthStub(channel)
            health.Check(health_pb2.HealthCheckRequest(), timeout=10)
            assert failing(health.Check, health_pb2.HealthCheckRequest(service="zz"), timeout=10).code() == (
                grpc.StatusCode.NOT_FOUND
            )
            metadata = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
            metadata.model_spec.name = "affine"
            prediction_service_pb2_grpc.PredictionServiceStub(channel).GetModelMetadata(metadata, timeout=10)
            failing(channel.unary_unary("/no.Such/Method"), b"", timeout=10)
            listing = reflection_pb2.ServerReflectionRequest(list_services="")
            assert list(reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(iter([listing])))

        served = {"model": "affine", "version": "2", "variant": variant}
        labels = {**served, "signature": "serving_default"}
        door = {"protocol": "tfserving_grpc"}
        # Predict outcomes: labelled with the model only when it is served, never with the client's string.
        assert value("batchwise_predict_requests_total", {**served, "code": "OK", **door}) == 3
        assert value("batchwise_predict_requests_total", {**served, "code": "INVALID_ARGUMENT", **door}) == 1
        assert value("batchwise_predict_requests_total",
                     {"model": "affine", "version": "", "variant": "", "code": "NOT_FOUND", **door}) == 1
        assert value("batchwise_predict_requests_total",
                     {"model": "", "version": "", "variant": "", "code": "NOT_FOUND", **door}) == 1
        assert value("batchwise_request_latency_seconds_count", {**labels, **door}) == 3
        assert value("batchwise_inflight_requests") == 0
        # Every method, with the code the client saw (aborts included) and a duration per call.
        for method, code, count in [(PREDICT, "OK", 3), (PREDICT, "NOT_FOUND", 2), (PREDICT, "INVALID_ARGUMENT", 1),
                                    (CHECK, "OK", 1), (CHECK, "NOT_FOUND", 1), ("unknown", "UNIMPLEMENTED", 1),
                                    ("/tensorflow.serving.PredictionService/GetModelMetadata", "OK", 1),
                                    ("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", "OK", 1)]:
            protocol = "tfserving_grpc" if method.startswith("/tensorflow.serving.") else ""
            assert value("batchwise_grpc_requests_total", {"method": method, "code": code, "protocol": protocol}) == (
                count
            ), (method, code)
        assert value("batchwise_grpc_request_duration_seconds_count", {"method": PREDICT, **door}) == 6
        # Batches: 3 requests of 2 rows each, each request one piece in the queue.
        assert value("batchwise_batch_size_rows_sum", labels) == 6
        assert value("batchwise_queue_wait_seconds_count", labels) == 3
        assert value("batchwise_compute_seconds_count", labels) == value("batchwise_batch_size_rows_count", labels)
        assert value("batchwise_batch_padding_rows_sum", labels) == 0
        assert value("batchwise_queue_rows", labels) == 0
        assert value("batchwise_queue_capacity_rows", labels) == 4096
        assert value("batchwise_rejections_total", {"model": "affine", "reason": "queue_full"}) == 0
        # Lifecycle: one good load timed, one failure, states as gauges.
        assert value("batchwise_model_version_state", {**served, "state": "AVAILABLE"}) == 1
        assert value("batchwise_model_version_state", {**served, "state": "LOADING"}) == 0
        assert value("batchwise_model_version_state", {"model": "affine", "version": "2", "variant": "",
                                                       "state": "LOADING"}) is None  # replaced, not left behind
        assert value("batchwise_model_version_state",
                     {"model": "broken", "version": "1", "variant": "", "state": "END"}) == 1
        assert value("batchwise_model_loads_total", {"model": "affine", "outcome": "success"}) == 1
        assert value("batchwise_model_loads_total", {"model": "broken", "outcome": "failure"}) == 1
        assert value("batchwise_model_load_seconds_count", {"model": "affine", "variant": variant}) == 1
        assert value("batchwise_model_warmup_seconds_count", {"model": "affine", "variant": variant}) == 1
    finally:
        thread.stop()
    # A clean unload drops the version's state series.
    assert value("batchwise_model_version_state", {**served, "state": "END"}) is None


def test_endpoint_request_ids_and_access_log(repo, caplog):
    caplog.set_level(logging.INFO, logger="service.access")
    thread = start(repo, access_log_sample_rate=1.0)
    url = f"http://127.0.0.1:{thread.server.metrics_port}/metrics"
    try:
        with grpc.insecure_channel(thread.target) as channel:
            predict(channel, metadata=(("x-request-id", "req-42"),))
            failing(predict, channel, version=9, metadata=(("x-request-id", "x" * 200),))
        text = urllib.request.urlopen(url, timeout=10).read().decode()
    finally:
        thread.stop()
    names = {family.name for family in text_string_to_metric_families(text)}
    assert {"batchwise_request_latency_seconds", "batchwise_predict_requests", "process_cpu_seconds",
            "python_gc_objects_collected", "python_info"} <= names
    logged = {(r.method, r.code): r.request_id for r in caplog.records if r.name == "service.access"}
    assert logged[(PREDICT, "OK")] == "req-42"
    generated = logged[(PREDICT, "NOT_FOUND")]  # the client's id was too long: replaced
    assert generated != "-" and 8 < len(generated) < 200
    with pytest.raises(urllib.error.URLError):  # the endpoint stopped with the server
        urllib.request.urlopen(url, timeout=5)


def test_metrics_disabled_means_no_endpoint_and_no_recording(server):
    assert server.server.metrics is None
    assert server.server.metrics_port is None
