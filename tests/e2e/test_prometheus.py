"""A real Prometheus scrapes a real server: counters equal the traffic sent, quantiles are finite, rules load."""

from __future__ import annotations

import json
import math
import shutil

import grpc
import numpy as np
import pytest

from service.api import predict_pb2, prediction_service_pb2_grpc
from service.rpc.codec import to_tensor_proto
from tests.support.prometheus import DEPLOY, PrometheusServer, require_binary
from tests.support.server import ServerThread, server_settings

pytestmark = [pytest.mark.slow, pytest.mark.needs_prometheus, pytest.mark.timeout(240)]
X = np.ones((2, 3), np.float32)
SENT = {"OK": 5, "NOT_FOUND": 2, "INVALID_ARGUMENT": 1}
P99 = 'histogram_quantile(0.99, sum by (le) (rate(batchwise_request_latency_seconds_bucket{model="affine"}[1m])))'


def send(channel, code: str) -> None:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "affine"
    x = X.astype(np.float64) if code == "INVALID_ARGUMENT" else X
    if code == "NOT_FOUND":
        request.model_spec.version.value = 9
    request.inputs["x"].CopyFrom(to_tensor_proto(x))
    try:
        prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=30)
        got = "OK"
    except grpc.RpcError as error:
        got = error.code().name
    assert got == code


def by_label(result: list[dict], label: str) -> dict[str, float]:
    return {sample["metric"].get(label, ""): float(sample["value"][1]) for sample in result}


def test_prometheus_scrapes_what_we_sent(model_repo, tmp_path):
    require_binary("prometheus")
    shutil.copytree(model_repo / "affine" / "2", tmp_path / "repo" / "affine" / "2")
    settings = server_settings(tmp_path / "repo", metrics={"enabled": True, "port": 0})
    thread = ServerThread(settings).start()
    try:
        with PrometheusServer(tmp_path, f"127.0.0.1:{thread.server.metrics_port}") as prom:
            # The request series exist at zero from load time: wait for a scrape of them before sending.
            assert prom.wait_until(lambda: prom.query('batchwise_request_latency_seconds_count{model="affine"}'))
            with grpc.insecure_channel(thread.target) as channel:
                for code, count in SENT.items():
                    for _ in range(count):
                        send(channel, code)

            def predict_counts() -> dict[str, float]:
                return by_label(prom.query('sum by (code) (batchwise_predict_requests_total{model="affine"})'), "code")

            assert prom.wait_until(lambda: predict_counts() == SENT), predict_counts()
            grpc_counts = by_label(prom.query(
                'batchwise_grpc_requests_total{method="/tensorflow.serving.PredictionService/Predict"}'), "code")
            assert grpc_counts == SENT

            def p99() -> float:
                result = prom.query(P99)
                return float(result[0]["value"][1]) if result else math.nan

            assert prom.wait_until(lambda: math.isfinite(p99())), prom.query(P99)
            assert p99() > 0
            assert_rules_evaluate(prom)
            assert_dashboard_queries_run(prom)
    finally:
        thread.stop()


def assert_rules_evaluate(prom: PrometheusServer) -> None:
    """Our recording and alerting rules load into the real Prometheus and evaluate without errors."""

    def rules() -> list[dict]:
        return [rule for group in prom.api("rules")["groups"] for rule in group["rules"]]

    assert prom.wait_until(lambda: all(rule["health"] == "ok" for rule in rules())), rules()
    names = {rule["name"] for rule in rules()}
    assert {"BatchwiseLatencyP99OverSLO", "BatchwiseNoModelAvailable",
            "model:batchwise_request_latency_seconds:histogram_quantile"} <= names
    recorded = 'model:batchwise_request_latency_seconds:histogram_quantile{model="affine",quantile="0.99"}'
    assert prom.wait_until(lambda: prom.query(recorded))
    firing = {alert["labels"]["alertname"] for alert in prom.api("alerts")["alerts"]}
    assert "BatchwiseNoModelAvailable" not in firing and "BatchwiseTargetDown" not in firing


def assert_dashboard_queries_run(prom: PrometheusServer) -> None:
    """Every PromQL expression in the Grafana dashboard is valid (with its variables filled in)."""
    dashboard = json.loads((DEPLOY / "grafana" / "batchwise.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    assert len(exprs) > 10
    for expr in exprs:
        filled = expr.replace("$model", ".*").replace("$variant", ".*").replace("$__rate_interval", "1m")
        prom.query(filled)  # raises on a PromQL error
