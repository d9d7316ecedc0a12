"""Worker mode end to end: real worker processes on one port, real gRPC, the aggregated /metrics."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import grpc
import pytest

from loadtests.servers import ROOT, health_status, start_server
from service.api import get_model_status_pb2, model_service_pb2_grpc
from tests.support import blocked_tf_env
from tests.support.litert_models import build_litert_models
from tests.support.prometheus import PrometheusServer, require_binary
from tests.support.workers import (
    NOT_SERVING,
    SERVING,
    Load,
    WorkerServer,
    copy_iris,
    publish_version,
    start_workers,
    stopped_lines,
    wait_until,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def litert_root():
    return build_litert_models().iris.version_dir.parents[1]


@pytest.fixture()
def repo(litert_root, tmp_path):
    return copy_iris(litert_root, tmp_path / "repo")


def _stop(server, timeout_s: float = 60) -> int:
    server.proc.send_signal(signal.SIGTERM)
    return server.proc.wait(timeout_s)


def _model_status(target: str) -> str:
    options = [("grpc.use_local_subchannel_pool", 1)]
    with grpc.insecure_channel(target, options=options) as channel:
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = "iris"
        reply = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(request, timeout=10)
    return str(reply)


def test_workers_all_serve_and_metrics_add_up(repo, tmp_path):
    server = start_workers(repo, tmp_path / "log", 2)
    try:
        with Load(server.target, connections=8) as load:
            wait_until(lambda: load.result.sent >= 400, 60, server)
        result = load.result
        assert set(result.codes) == {"OK"}, result.codes
        ok = server.total("batchwise_predict_requests_total", model="iris", code="OK")
        assert ok == result.codes["OK"]  # counters from both workers sum to the calls sent
        assert server.total("batchwise_workers_ready") == 2
        states = [
            labels
            for labels, v in server.samples("batchwise_model_version_state")
            if v == 1 and labels["state"] == "AVAILABLE"
        ]
        assert {labels["pid"] for labels in states} == {str(pid) for pid in server.worker_pids()}
        assert len({_model_status(server.target) for _ in range(8)}) == 1  # the same answer from any worker
        second = subprocess.run(  # a plain server on the same port must still fail to bind
            [
                sys.executable,
                "-m",
                "service",
                "--repository.path",
                str(repo),
                "--server.port",
                str(server.port),
                "--no-metrics.enabled",
            ],
            check=False,
            cwd=ROOT,
            env=blocked_tf_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode != 0
        assert f"Failed to bind to address 127.0.0.1:{server.port}" in second.stderr
    finally:
        assert _stop(server) == 0
    per_worker = stopped_lines(server.log_text())
    assert len(per_worker) == 2 and all(w["completed"] > 0 for w in per_worker), per_worker  # both served
    assert sum(w["completed"] for w in per_worker) == result.codes["OK"] + 8  # the Predicts and GetModelStatus calls
    assert "[w0]" in server.log_text() and "[w1]" in server.log_text()


def test_killed_worker_is_replaced_and_loses_only_its_calls(repo, tmp_path):
    server = start_workers(repo, tmp_path / "log", 2)
    connections = 8
    try:
        victim = server.worker_pids()[0]
        # wait_for_ready: a client whose reconnect races the dying worker's listener (its SYN queued
        # there an instant before the kernel closed it) gets a reset, and a fail-fast channel would
        # then fail every call for its reconnect backoff (~1 s). docs/workers.md says so.
        with Load(server.target, connections=connections, wait_for_ready=True) as load:
            wait_until(lambda: load.result.sent >= 200, 60, server)
            os.kill(victim, signal.SIGKILL)
            # A worker short, the server as a whole is not ready, whichever worker answers the check.
            wait_until(lambda: health_status(server.target) == NOT_SERVING, 10, server)
            wait_until(lambda: len(server.worker_pids()) == 2 and victim not in server.worker_pids(), 30, server)
            wait_until(lambda: health_status(server.target) == SERVING, 60, server)
            before = load.result.sent
            wait_until(lambda: load.result.sent >= before + 200, 60, server)
        result = load.result
        lost = result.sent - result.codes["OK"]
        assert lost <= connections, result.codes  # at most the calls the dead worker held, one per connection
        assert set(result.codes) <= {"OK", "UNAVAILABLE"}, result.codes
        assert server.total("batchwise_worker_restarts_total", worker="0") == 1
        assert f"worker 0 (pid {victim}) was killed by SIGKILL" in server.log_text()
    finally:
        assert _stop(server) == 0


def test_sigterm_under_load_drains_every_worker(repo, tmp_path):
    server = start_workers(repo, tmp_path / "log", 2, "--server.grace-period-s", "10")
    with Load(server.target, connections=8, stop_on_error=True) as load:
        wait_until(lambda: load.result.sent >= 200, 60, server)
        started_s = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(30) == 0
        stop_s = time.monotonic() - started_s
    result = load.result
    assert set(result.codes) <= {"OK", "UNAVAILABLE"}, result.codes  # refused (retryable), never cancelled
    per_worker = stopped_lines(server.log_text())
    assert len(per_worker) == 2, server.log_text()[-2000:]
    assert all(w["cut_off"] == 0 and w["in_flight"] == 0 for w in per_worker), per_worker
    assert sum(w["completed"] for w in per_worker) == result.codes["OK"]  # 0 accepted calls lost
    assert stop_s < 10  # within the grace period


def test_new_version_reaches_every_worker_under_load(repo, tmp_path):
    server = start_workers(repo, tmp_path / "log", 2, "--repository.poll-interval-s", "0.5")
    try:
        with Load(server.target, connections=8) as load:
            wait_until(lambda: load.result.sent >= 200, 60, server)
            publish_version(repo, "iris", 2)

            def everywhere() -> bool:
                pids = {str(p) for p in server.worker_pids()}
                states = server.samples("batchwise_model_version_state")
                have = {s["pid"] for s, v in states if v == 1 and s["version"] == "2" and s["state"] == "AVAILABLE"}
                return have == pids

            wait_until(everywhere, 60, server)
            wait_until(lambda: all(seen and seen[-1] == 2 for seen in load.result.versions), 30, server)
        result = load.result
        assert set(result.codes) == {"OK"}, result.codes
        for seen in result.versions:  # within one connection, never an older version after a newer one
            assert seen == sorted(seen)
    finally:
        assert _stop(server) == 0


@pytest.mark.needs_prometheus
def test_a_real_prometheus_sees_every_worker_summed(repo, tmp_path):
    require_binary("prometheus")
    server = start_workers(repo, tmp_path / "log", 2)
    try:
        with PrometheusServer(tmp_path, f"127.0.0.1:{server.metrics_port}") as prom:
            with Load(server.target, connections=8) as load:
                wait_until(lambda: load.result.sent >= 300, 60, server)
            sent = load.result.codes["OK"]
            assert set(load.result.codes) == {"OK"}, load.result.codes

            def ok_total() -> float:
                result = prom.query('sum(batchwise_predict_requests_total{model="iris",code="OK"})')
                return float(result[0]["value"][1]) if result else -1.0

            assert prom.wait_until(lambda: ok_total() == sent), (ok_total(), sent)
            histogram = 'sum(batchwise_request_latency_seconds_count{model="iris"})'  # merged across workers
            assert prom.wait_until(lambda: float(prom.query(histogram)[0]["value"][1]) == sent)
            pids = prom.query('count(batchwise_model_version_state{model="iris",state="AVAILABLE"} == 1)')
            assert float(pids[0]["value"][1]) == 2  # one series per worker (liveall)
    finally:
        assert _stop(server) == 0


def test_workers_killed_while_loading_end_in_a_crash_loop_error(repo, tmp_path):
    """Like an OOM killer that strikes every worker while it loads its models: SIGKILL before it is ready."""
    log = tmp_path / "log"
    args = ["--repository.path", str(repo), "--metrics.port", "0", "--server.workers", "2"]
    server = WorkerServer(start_server(args, env=blocked_tf_env(), log_path=log).proc, 0, 0, log)
    killed: set[int] = set()
    deadline = time.monotonic() + 120
    while server.proc.poll() is None and time.monotonic() < deadline:
        for pid in set(server.worker_pids()) - killed:
            os.kill(pid, signal.SIGKILL)
            killed.add(pid)
        time.sleep(0.02)
    assert server.proc.wait(10) == 1
    text = log.read_text()
    assert "died 5 times in a row before serving (was killed by SIGKILL); giving up" in text, text[-3000:]
    assert "restarting in 4.0 s" in text  # backoff doubled between attempts instead of spinning
    assert len(killed) >= 5
