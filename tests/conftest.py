"""Session fixtures: a repository of tiny real SavedModels and a server serving it."""

from __future__ import annotations

import grpc
import pytest

from tests.support.models import build_repository
from tests.support.server import ServerThread, server_settings


@pytest.fixture(scope="session")
def model_repo(tmp_path_factory):
    """affine/{1,2}, strings/1, mlp/1 as real SavedModels."""
    return build_repository(tmp_path_factory.mktemp("repo"))


@pytest.fixture(scope="session")
def server(model_repo):
    """A real server on a loopback port with default batching."""
    affine = {"version_policy": "all", "version_labels": {"stable": 1}}
    settings = server_settings(model_repo, models={"affine": affine})
    thread = ServerThread(settings).start()
    yield thread
    thread.stop()


@pytest.fixture()
def channel(server):
    with grpc.insecure_channel(server.target) as chan:
        yield chan


@pytest.fixture(scope="session")
def tritonclient_python():
    """The interpreter of tritonclient's own venv (built once, cached in .cache/; tests/support/tritonclient_env)."""
    from tests.support.tritonclient_env import ensure_venv

    return ensure_venv()
