"""Fixtures for lifecycle tests: model sources to publish from, and a per-test server factory."""

from __future__ import annotations

import pytest

from tests.support.models import export_affine
from tests.support.server import ServerThread


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

