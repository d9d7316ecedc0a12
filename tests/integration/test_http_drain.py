"""The drain covers the HTTP port: new requests get 503, accepted ones finish, readiness turns false."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from service.http.server import DRAINING_MESSAGE
from tests.support.server import wait_for

BODY = {"instances": [[1.0, 2.0, 3.0]]}






def test_drain_refuses_new_http_requests_and_finishes_accepted_ones(slow_server):
    url = slow_server.http_url
    assert requests.get(url + "/v2/health/ready", timeout=10).status_code == 200
    with ThreadPoolExecutor(2) as pool:
        queued = pool.submit(requests.post, url + "/v1/models/affine:predict", json=BODY, timeout=60)
        infer = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}
        queued_v2 = pool.submit(requests.post, url + "/v2/models/affine/infer", json=infer, timeout=60)
        wait_for(lambda: slow_server.server.calls.in_flight == 2)
        stopping = asyncio.run_coroutine_threadsafe(slow_server.server.stop(30), slow_server.loop)
        wait_for(lambda: slow_server.server.calls.draining)

        refused = requests.post(url + "/v1/models/affine:predict", json=BODY, timeout=10)
        assert refused.status_code == 503
        assert refused.json() == {"error": DRAINING_MESSAGE}
        assert refused.headers.get("Connection", "").lower() == "close"
        assert requests.get(url + "/v2/health/ready", timeout=10).status_code == 400  # probes see the drain
        assert requests.get(url + "/v2/health/live", timeout=10).status_code == 200
        assert not queued.done()  # all of the above happened while the accepted requests were queued

        assert queued.result().status_code == 200
        assert queued.result().json()["predictions"][0]["total"] == pytest.approx(21.0)
        assert queued_v2.result().status_code == 200
    # requests' pool keeps both connections open (idle, keep-alive): they must not hold the drain
    # for its 30 s grace period, so the stop ends long before it
    stopping.result(15)
    calls = slow_server.server.calls
    assert (calls.accepted, calls.completed, calls.refused) == (2, 2, 1)
