"""SIGTERM to the CLI server with HTTP requests in flight: they finish, and the port is closed afterwards."""

from __future__ import annotations

import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.support.process import free_port, start_server, wait_serving

BODY = {"instances": [[1.0, 1.0, 1.0]]}


@pytest.mark.slow
def test_sigterm_lets_http_requests_in_flight_finish(model_repo, tmp_path):
    port, http_port = free_port(), free_port()
    args = [
        "--repository.path",
        str(model_repo),
        "--server.port",
        str(port),
        "--http.port",
        str(http_port),
        "--batching.batch-timeout-ms",
        "1500",
        "--batching.batch-idle-timeout-ms",
        "0",
        "--server.grace-period-s",
        "20",
    ]
    proc = start_server(args, env={"BATCHWISE_METRICS__ENABLED": "false"}, log_path=tmp_path / "log")
    wait_serving(f"127.0.0.1:{port}", proc)
    url = f"http://127.0.0.1:{http_port}/v1/models/affine:predict"
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(requests.post, url, json=BODY, timeout=60) for _ in range(8)]
        time.sleep(0.5)  # the requests are queued in the batcher (1.5 s batch timeout)
        proc.send_signal(signal.SIGTERM)
        replies = [f.result() for f in futures]
    assert [r.status_code for r in replies] == [200] * 8
    assert all(r.json()["predictions"][0]["total"] == pytest.approx(12.0) for r in replies)
    assert proc.wait(60) == 0
    with pytest.raises(requests.ConnectionError):
        requests.post(url, json=BODY, timeout=5)
