"""A worker listens on the shared port only once its models are loaded; a single server listens at once.

Why it matters: the kernel spreads new connections over every socket listening on a SO_REUSEPORT
port. A restarted worker that listened while still loading took its share of the reconnecting
clients and failed each of their calls (UNAVAILABLE, model not loaded) while a sibling could have
served them; CI once saw 18,674 such failures in one restart.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import socket
import threading

import numpy as np
import pytest

from loadtests.servers import free_port, health_status
from service.client import BatchwiseClient
from service.workers.readiness import ReadinessBoard, WorkerRole
from tests.support.repos import copy_models
from tests.support.server import ServerThread, server_settings, wait_for

SERVING = 1


@pytest.fixture(scope="module")
def repo(model_repo, tmp_path_factory):
    return copy_models(model_repo, tmp_path_factory.mktemp("listen-order") / "repo", "affine")


def _accepts(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _start_gated(thread: ServerThread) -> tuple[threading.Event, threading.Event, asyncio.Future]:
    """Start the server with its repository scan held at a gate; return (loading, gate, start future)."""
    loading, gate = threading.Event(), threading.Event()
    reconcile = thread.server.manager.reconcile

    async def held_reconcile(*args, **kwargs):
        loading.set()
        await asyncio.get_running_loop().run_in_executor(None, gate.wait, 60)
        return await reconcile(*args, **kwargs)

    thread.server.manager.reconcile = held_reconcile
    thread._thread.start()
    started = asyncio.run_coroutine_threadsafe(thread.server.start(), thread.loop)
    assert loading.wait(60)
    return loading, gate, started


@pytest.mark.parametrize("as_worker", [True, False], ids=["worker", "single"])
def test_a_worker_takes_connections_only_once_it_can_serve(repo, as_worker):
    port = free_port()
    role = None
    if as_worker:
        role = WorkerRole(0, 1, ReadinessBoard.create(multiprocessing.get_context("spawn"), 1))
    thread = ServerThread(server_settings(repo, server={"port": port}, http={"enabled": False}), worker=role)
    _, gate, started = _start_gated(thread)
    try:
        # While loading: a worker refuses the connection (the kernel gives it to a sibling);
        # a single server accepts it so that probes can see NOT_SERVING.
        assert _accepts(port) is not as_worker
        gate.set()
        thread.port = started.result(60)
        assert thread.port == port and _accepts(port)
        wait_for(lambda: health_status(thread.target) == SERVING)
        with BatchwiseClient(thread.target) as client:
            version, outputs = client.predict("affine", {"x": np.ones((1, 3), np.float32)})
        assert version == 2 and outputs["y"].tolist() == [[4.0, 4.0, 4.0]]
    finally:
        gate.set()
        started.result(60)
        thread.stop()
