"""The load generator against a real gRPC server on loopback: counts, errors by status code, its own CPU."""

from __future__ import annotations

import os

import numpy as np
import pytest

from loadtests import loadgen, payloads
from tests.support.echo_server import MISSING_MODEL, EchoServicer, start_echo_server


@pytest.fixture(scope="module")
def echo():
    server, target = start_echo_server(EchoServicer())
    yield target
    server.stop(None)


def _spec(target: str, payload_file, **points) -> dict:
    return {"target": target, "method": payloads.PREDICT_METHOD, "payload_file": str(payload_file),
            "duration_s": 0.5, "warmup_s": 0.1, "timeout_s": 5.0, "channels": 2, **points}


@pytest.mark.timeout(120)
def test_closed_and_open_loop_points_count_calls_and_the_generators_own_cpu(echo, tmp_path):
    request = tmp_path / "request.bin"
    request.write_bytes(payloads.predict_request("echo", {"x": np.ones((1, 4), np.float32)}))
    closed, opened = loadgen.run_in_subprocess(_spec(echo, request, concurrency=[4], rates=[200.0]), timeout_s=100)
    assert closed["mode"] == "closed" and closed["ok"] > 0 and closed["errors"] == {}
    assert closed["throughput_rps"] == closed["ok"] / closed["duration_s"]
    assert closed["p50_ms"] <= closed["p99_ms"]
    assert opened["mode"] == "open" and opened["offered_rps"] == 200.0 and opened["ok"] == 100
    for point in (closed, opened):  # one process's CPU: busy, but never more than the machine has
        assert 0 < point["client_cpu_cores"] <= os.cpu_count() + 0.05


@pytest.mark.timeout(120)
def test_failed_calls_are_counted_by_status_code_and_not_as_throughput(echo, tmp_path):
    request = tmp_path / "missing.bin"
    request.write_bytes(payloads.predict_request(MISSING_MODEL, {"x": np.ones((1, 4), np.float32)}))
    (point,) = loadgen.run_in_subprocess(_spec(echo, request, concurrency=[2]), timeout_s=100)
    assert point["ok"] == 0 and point["throughput_rps"] == 0
    assert set(point["errors"]) == {"NOT_FOUND"} and point["errors"]["NOT_FOUND"] > 0
