"""The v2 gRPC door as Triton's own client sees it: tritonclient.grpc, unchanged, from its own venv and process."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.support.certs import make_pki
from tests.support.repos import copy_models
from tests.support.server import ServerThread, server_settings
from tests.support.tritonclient_env import run_client

SCRIPT = Path(__file__).resolve().parents[1] / "support" / "clients" / "tritonclient_grpc.py"
TOKEN = "tritonclient-token-0123456789abcdef"
pytestmark = pytest.mark.timeout(900)  # the first run builds tritonclient's venv


@pytest.fixture(scope="module")
def card(model_repo):
    """mlp/1's model card: in-distribution sample rows and the outputs Keras itself gave for them."""
    return json.loads((model_repo / "mlp" / "1" / "model_card.json").read_text())


def plan(card, **extra) -> str:
    rows = card["samples"]["inputs"]["features"]
    return json.dumps({"model": "mlp", "input": "features", "output": "probabilities", "rows": rows, **extra})


@pytest.fixture(scope="module")
def plain_server(model_repo, tmp_path_factory):
    repo = copy_models(model_repo, tmp_path_factory.mktemp("triton") / "repo", "mlp")
    thread = ServerThread(server_settings(repo)).start()
    yield thread
    thread.stop()


def test_tritonclient_grpc_end_to_end(plain_server, card, tritonclient_python):
    seen = run_client(SCRIPT, plain_server.target, plan(card), python=tritonclient_python)
    assert seen["server_live"] == ["OK", True]
    assert seen["server_ready"] == ["OK", True]
    assert seen["server_metadata"][1]["name"] == "batchwise"
    assert seen["model_ready"] == ["OK", True]
    assert seen["unknown_model_ready"] == ["OK", False]
    metadata = seen["model_metadata"][1]
    assert metadata["name"] == "mlp" and metadata["versions"] == ["1"]
    assert metadata["inputs"] == [{"name": "features", "datatype": "FP32", "shape": ["-1", "4"]}]
    assert metadata["outputs"] == [{"name": "probabilities", "datatype": "FP32", "shape": ["-1", "3"]}]
    status, answer = seen["infer"]
    assert status == "OK" and answer["id"] == "tc-1" and answer["model_version"] == "1"
    np.testing.assert_allclose(answer["output"], card["samples"]["outputs"]["probabilities"], rtol=1e-5, atol=1e-6)
    assert seen["unknown_model"][0] == "NOT_FOUND" and "no-such-model" in seen["unknown_model"][1]
    assert seen["wrong_shape"][0] == "INVALID_ARGUMENT" and "input 'features' expects shape" in seen["wrong_shape"][1]
    assert seen["wrong_dtype"][0] == "INVALID_ARGUMENT"
    assert "input 'features' expects dtype float32 but got float64" in seen["wrong_dtype"][1]


@pytest.fixture(scope="module")
def token_server(model_repo, tmp_path_factory):
    """TLS and a bearer token: tritonclient reaches it over TLS, with and without the token."""
    pki = make_pki(tmp_path_factory.mktemp("pki"))
    repo = copy_models(model_repo, tmp_path_factory.mktemp("triton-auth") / "repo", "mlp")
    security = {"tls_cert_file": pki["server"].cert, "tls_key_file": pki["server"].key, "auth_tokens": [TOKEN]}
    thread = ServerThread(server_settings(repo, security=security)).start()
    thread.ca = pki["ca"].cert
    yield thread
    thread.stop()


def test_tritonclient_grpc_needs_the_token(token_server, card, tritonclient_python):
    target = f"localhost:{token_server.port}"
    ca = str(token_server.ca)
    refused = run_client(SCRIPT, target, plan(card, root_certificates=ca), python=tritonclient_python)
    for check in ("server_ready", "model_metadata", "infer"):
        assert refused[check][0] == "UNAUTHENTICATED", (check, refused[check])
    allowed = run_client(SCRIPT, target, plan(card, root_certificates=ca, token=TOKEN), python=tritonclient_python)
    assert allowed["infer"][0] == "OK"
    np.testing.assert_allclose(
        allowed["infer"][1]["output"], card["samples"]["outputs"]["probabilities"], rtol=1e-5, atol=1e-6
    )
