"""The CLI server under load: ready only when every model is loaded; SIGTERM loses no accepted request.

"Accepted" is defined by the server: a call whose handler started. The server logs, as it exits,
`API calls since start: accepted=A completed=C errored=E cut_off=X`. Every call the clients make
ends OK or UNAVAILABLE (refused: the handler never ran), and the OK count must equal A and C,
with E = X = 0. A long batch timeout on one model keeps requests queued when SIGTERM arrives
(the server logs how many were in flight, which must be > 0), while another model serves fast.
"""

from __future__ import annotations

import re
import signal
import threading
import time
from collections import Counter

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from loadtests.servers import free_port, start_server
from service.api import get_model_status_pb2, model_service_pb2_grpc, predict_pb2, prediction_service_pb2_grpc
from tests.support.requests import predict_request

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE
GRACE_S = 30
QUEUED_CLIENTS = 12  # affine: each waits for the 2 s batch timer
FAST_CLIENTS = 6  # mlp: default batching
CONFIG = """
[models.affine.batching]
mode = "fixed"
batch_timeout_ms = 2000
batch_idle_timeout_ms = 0
max_batch_size = 64
"""
INPUTS = {"affine": ("x", np.ones((1, 3), np.float32)), "mlp": ("features", np.ones((2, 4), np.float32))}


def _request(model: str) -> predict_pb2.PredictRequest:
    name, value = INPUTS[model]
    return predict_request(model, {name: value})


class HealthWatch(threading.Thread):
    """Watches overall health from before the server starts; records every status and how the stream ended."""

    def __init__(self, target: str) -> None:
        super().__init__(daemon=True)
        self.target = target
        self.statuses: list[int] = []
        self.serving = threading.Event()
        self.not_serving_after_serving = threading.Event()
        self.ended_with: grpc.StatusCode | None = None

    def run(self) -> None:
        while self.ended_with is None:
            try:
                with grpc.insecure_channel(self.target) as channel:
                    for reply in health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest()):
                        self._record(reply.status)
                    self.ended_with = grpc.StatusCode.OK
            except grpc.RpcError as exc:
                if self.serving.is_set():
                    self.ended_with = exc.code()
                time.sleep(0.05)

    def _record(self, status: int) -> None:
        self.statuses.append(status)
        if status == SERVING:
            self.serving.set()
        elif status == NOT_SERVING and self.serving.is_set():
            self.not_serving_after_serving.set()


@pytest.fixture(scope="module")
def loaded_server(model_repo, tmp_path_factory):
    """The CLI serving the test repository, a health watch started before it, and the model states at SERVING."""
    folder = tmp_path_factory.mktemp("lifecycle")
    (folder / "server.toml").write_text(CONFIG)
    port = free_port()
    target = f"127.0.0.1:{port}"
    watch = HealthWatch(target)
    watch.start()
    args = ["--config-file", str(folder / "server.toml"), "--repository.path", str(model_repo),
            "--server.grace-period-s", str(GRACE_S), "--repository.poll-interval-s", "0"]
    proc = start_server(args, port=port, env={"BATCHWISE_METRICS__ENABLED": "false"}, log_path=folder / "server.log")
    assert watch.serving.wait(240), "server never became SERVING"
    with grpc.insecure_channel(target) as channel:
        stub = model_service_pb2_grpc.ModelServiceStub(channel)
        states = {}
        for model in ("affine", "strings", "mlp"):
            request = get_model_status_pb2.GetModelStatusRequest()
            request.model_spec.name = model
            states[model] = [s.state for s in stub.GetModelStatus(request, timeout=10).model_version_status]
    yield {"proc": proc, "target": target, "watch": watch, "states": states, "log": folder / "server.log",
           "status_calls": len(states)}
    proc.stop(timeout_s=0)


@pytest.mark.slow
def test_regression_health_is_serving_only_when_every_model_is_loaded(loaded_server):
    """The first AVAILABLE version flipped overall health to SERVING while other models still loaded."""
    assert loaded_server["watch"].statuses[0] == NOT_SERVING
    assert loaded_server["states"] == {"affine": [AVAILABLE], "strings": [AVAILABLE], "mlp": [AVAILABLE]}


class Clients:
    """Closed-loop clients, each on its own channel, sending until refused; counts outcomes by status."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.codes: Counter[grpc.StatusCode] = Counter()
        self.details: list[str] = []
        self.affine_batch_done = threading.Event()  # set when a slow (queued) request completes
        self._lock = threading.Lock()
        models = ["affine"] * QUEUED_CLIENTS + ["mlp"] * FAST_CLIENTS
        self.threads = [threading.Thread(target=self._loop, args=(m,), daemon=True) for m in models]

    def _loop(self, model: str) -> None:
        request = _request(model)
        with grpc.insecure_channel(self.target) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            while True:
                try:
                    stub.Predict(request, timeout=GRACE_S + 30)
                    code = grpc.StatusCode.OK
                except grpc.RpcError as exc:
                    code = exc.code()
                    with self._lock:
                        self.details.append(exc.details() or "")
                with self._lock:
                    self.codes[code] += 1
                if code != grpc.StatusCode.OK:
                    return
                if model == "affine":
                    self.affine_batch_done.set()


def _api_call_counts(log_text: str) -> dict[str, int]:
    found = re.search(r"API calls since start: (.*)", log_text)
    assert found, log_text[-3000:]
    return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", found.group(1))}


@pytest.mark.slow
def test_sigterm_under_load_completes_every_accepted_request(loaded_server):
    proc, target, watch = loaded_server["proc"], loaded_server["target"], loaded_server["watch"]
    clients = Clients(target)
    for thread in clients.threads:
        thread.start()
    while clients.codes[grpc.StatusCode.OK] < 2 * QUEUED_CLIENTS + 50:  # a couple of slow batches, many fast ones
        time.sleep(0.1)
    # Right after a slow batch: its clients re-queue at once and wait ~2 s for the next, so the
    # drain below has queued work and lasts long enough to watch new calls being refused.
    clients.affine_batch_done.clear()
    assert clients.affine_batch_done.wait(30)
    time.sleep(0.2)
    proc.signal(signal.SIGTERM)

    assert watch.not_serving_after_serving.wait(GRACE_S), watch.statuses
    with grpc.insecure_channel(target) as channel, pytest.raises(grpc.RpcError) as refused:  # while draining
        prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(_request("mlp"), timeout=10)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert proc.poll() is None  # refused while draining, not because the process had gone
    assert proc.wait(GRACE_S) == 0
    for thread in clients.threads:
        thread.join(30)

    log_text = loaded_server["log"].read_text()
    drained = int(re.search(r"stopping: draining (\d+) in-flight calls", log_text).group(1))
    server = _api_call_counts(log_text)
    client_ok = clients.codes.pop(grpc.StatusCode.OK) + loaded_server["status_calls"]
    print(f"\nin flight at SIGTERM: {drained}; server: {server}; client OK: {client_ok}; {dict(clients.codes)}")
    assert drained > 0  # the drain had queued work to finish
    assert set(clients.codes) == {grpc.StatusCode.UNAVAILABLE}, clients.details[:5]
    assert server["errored"] == 0 and server["cut_off"] == 0 and server["in_flight"] == 0
    assert server["accepted"] == server["completed"] == client_ok
    assert watch.ended_with == grpc.StatusCode.OK  # the Watch stream ended at once instead of holding the drain
