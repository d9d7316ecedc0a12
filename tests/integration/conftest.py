"""Fixtures for integration tests: model sources to publish from, a per-test server factory, a slow server."""

from __future__ import annotations

import pytest

from tests.support.models import export_affine
from tests.support.repos import copy_models
from tests.support.server import ServerThread, server_settings


@pytest.fixture(scope="session")
def sources(model_repo, tmp_path_factory):
    """Folders to publish copies of: affine x*2+1, x*3+1, x*4+1 and the Keras MLP."""
    extra = tmp_path_factory.mktemp("sources")
    export_affine(extra / "affine4", 4.0, 1.0)
    return {
        "affine2": model_repo / "affine" / "1",
        "affine3": model_repo / "affine" / "2",
        "affine4": extra / "affine4",
        "mlp": model_repo / "mlp" / "1",
    }


@pytest.fixture()
def start_server():
    """start_server(settings) -> a running ServerThread, stopped after the test."""
    started: list[ServerThread] = []

    def start(settings) -> ServerThread:
        started.append(ServerThread(settings).start())
        return started[-1]

    yield start
    for thread in started:
        thread.stop()


@pytest.fixture()
def slow_server(model_repo, tmp_path):
    """affine only, in fixed mode with a 3 s batch timeout and no idle timeout, so that a request stays
    queued while a drain test looks at the server; stopped after the test unless the test stopped it."""
    repo = copy_models(model_repo, tmp_path / "repo", "affine")
    slow = {"mode": "fixed", "batch_timeout_ms": 3000, "batch_idle_timeout_ms": 0}
    thread = ServerThread(server_settings(repo, batching=slow)).start()
    yield thread
    if not thread.server._stopping:
        thread.stop()
