"""The fuzz target: the session's in-process server, or (BATCHWISE_FUZZ_SERVER=subprocess) the real CLI.

BATCHWISE_FUZZ_EXAMPLES sets the examples per test (default: a short, deterministic run that is
part of `make test`); with it set, hypothesis draws fresh random examples. Long run:
    BATCHWISE_FUZZ_EXAMPLES=20000 BATCHWISE_FUZZ_SERVER=subprocess .venv/bin/python -m pytest tests/fuzz -x
"""

from __future__ import annotations

import os

import grpc
import numpy as np
import pytest

from service.api import prediction_service_pb2_grpc
from service.rpc.codec import to_ndarray
from tests.support.memory import MIB, anon_rss_bytes, peak_rss_bytes, reset_peak_rss, rss_bytes
from tests.support.process import free_port, start_server, wait_serving
from tests.support.requests import predict_request

CLIENT_OPTIONS = [("grpc.max_receive_message_length", 256 * MIB), ("grpc.max_send_message_length", 256 * MIB)]
X = np.array([[1.0, 2.0, 3.0]], np.float32)
SAME_MODELS_AS_SESSION_SERVER = """
[models.affine]
version_policy = "all"
version_labels = { stable = 1 }
"""


class FuzzTarget:
    """A channel to the server under test, its process id for memory readings, and a liveness probe."""

    def __init__(self, target: str, pid: int, http_url: str = "") -> None:
        self.target = target
        self.pid = pid
        self.http_url = http_url  # the HTTP port's base URL (TF Serving REST and v2 REST)
        self.channel = grpc.insecure_channel(target, options=CLIENT_OPTIONS)
        self.predictions = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)

    def raw(self, method: str):
        """A stub for `method` that sends and receives raw bytes (no serialization on our side)."""
        return self.channel.unary_unary(method)

    def assert_alive(self) -> None:
        """A valid Predict succeeds with the right numbers."""
        response = self.predictions.Predict(predict_request("affine", {"x": X}), timeout=30)
        np.testing.assert_allclose(to_ndarray(response.outputs["y"], "y", max_elements=16), X * 3 + 1)

    def rss_bytes(self) -> int:
        return rss_bytes(self.pid)

    def anon_rss_bytes(self) -> int:
        return anon_rss_bytes(self.pid)

    def peak_rss_bytes(self) -> int:
        return peak_rss_bytes(self.pid)

    def reset_peak(self) -> bool:
        return reset_peak_rss(self.pid)


@pytest.fixture(scope="session")
def fuzz_target(request, model_repo, tmp_path_factory):
    if os.environ.get("BATCHWISE_FUZZ_SERVER") == "subprocess":
        port, http_port = free_port(), free_port()
        folder = tmp_path_factory.mktemp("fuzz")
        config, log = folder / "server.toml", folder / "server.log"
        config.write_text(SAME_MODELS_AS_SESSION_SERVER)
        args = ["--config-file", str(config), "--repository.path", str(model_repo), "--server.port", str(port),
                "--repository.poll-interval-s", "0", "--http.port", str(http_port)]
        proc = start_server(args, env={"BATCHWISE_METRICS__ENABLED": "false"}, log_path=log)
        wait_serving(f"127.0.0.1:{port}", proc)
        target = FuzzTarget(f"127.0.0.1:{port}", proc.pid, f"http://127.0.0.1:{http_port}")
        yield target
        target.channel.close()
        proc.terminate()
        assert proc.wait(60) == 0, log.read_text()[-2000:]
    else:
        server = request.getfixturevalue("server")
        target = FuzzTarget(server.target, os.getpid(), server.http_url)
        yield target
        target.channel.close()
