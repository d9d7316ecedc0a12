"""The light client over TF Serving REST against a real server: same answers as over gRPC, same error style."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from google.protobuf import json_format

from service.api import get_model_metadata_pb2
from service.client import BatchwiseClient, ClientError
from service.rest_client import RestClient
from tests.support import blocked_tf_env
from tests.support.certs import make_pki
from tests.support.repos import copy_models
from tests.support.server import ServerThread, server_settings

TOKEN = "rest-client-token-0123456789abcdef"
X = np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 4.0]], np.float32)


@pytest.fixture(scope="module")
def rest(server):
    with RestClient(server.http_url, timeout_s=30) as client:
        yield client


@pytest.fixture(scope="module")
def grpc_client(server):
    with BatchwiseClient(server.target, timeout_s=30) as client:
        yield client


def test_predict_matches_grpc_for_every_model(rest, grpc_client):
    features = np.random.default_rng(3).normal(size=(4, 4)).astype(np.float32)
    cases = [("affine", {"x": X}), ("mlp", {"features": features}), ("strings", {"text": np.array([b"ab", b"xyz"])})]
    for model, inputs in cases:
        over_rest = rest.predict_detailed(model, inputs)
        over_grpc = grpc_client.predict_detailed(model, inputs)
        assert over_rest.version == over_grpc.version, model
        assert over_rest.outputs.keys() == over_grpc.outputs.keys(), model
        for name, expected in over_grpc.outputs.items():
            got = over_rest.outputs[name]
            assert got.dtype == expected.dtype and got.shape == expected.shape, (model, name)
            if expected.dtype.kind == "O":
                assert got.tolist() == expected.tolist()
            else:
                np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_versions_labels_signatures_and_output_filter(rest):
    assert rest.predict("affine", {"x": X}, version=1)[1]["y"].tolist() == (X * 2 + 1).tolist()
    version, outputs = rest.predict("affine", {"x": X}, label="stable")
    assert version == 1 and outputs["y"].tolist() == (X * 2 + 1).tolist()
    only = rest.predict_detailed("affine", {"x": X}, signature="total_only", version=2)
    assert only.signature == "total_only" and list(only.outputs) == ["total"]  # a single, unnamed REST output
    np.testing.assert_allclose(only.outputs["total"], (X * 3 + 1).sum(axis=1), rtol=1e-6)
    assert list(rest.predict("affine", {"x": X}, output_filter=["total"])[1]) == ["total"]


def _signature_defs(metadata: dict) -> get_model_metadata_pb2.SignatureDefMap:
    """The SignatureDefMap JSON as a message (REST prints default values, gRPC's JSON leaves them out)."""
    return json_format.ParseDict({"signature_def": metadata["signature_def"]}, get_model_metadata_pb2.SignatureDefMap())


def test_metadata_and_status_have_the_grpc_clients_shape(rest, grpc_client):
    over_rest, over_grpc = rest.metadata("affine", version=2), grpc_client.metadata("affine", version=2)
    assert over_rest.keys() == over_grpc.keys() and over_rest["model_spec"] == over_grpc["model_spec"]
    assert _signature_defs(over_rest) == _signature_defs(over_grpc)
    assert rest.status("affine") == grpc_client.status("affine")
    assert rest.input_dtypes("mlp") == {"features": np.dtype(np.float32)}


@pytest.mark.parametrize(
    ("call", "code", "named"),
    [
        (lambda c: c.predict("no-such-model", {"x": X}), "NOT_FOUND", "no-such-model"),
        (lambda c: c.predict("affine", {"x": np.ones((2, 5), np.float32)}), "INVALID_ARGUMENT", "x"),
        (lambda c: c.predict("affine", {"x": np.array([[b"a", b"b", b"c"]])}), "INVALID_ARGUMENT", "x"),
        (lambda c: c.status("affine", version=99), "NOT_FOUND", "99"),
        (lambda c: c.metadata("no-such-model"), "NOT_FOUND", "no-such-model"),
    ],
    ids=["unknown-model", "wrong-shape", "wrong-dtype", "unknown-version", "metadata-unknown-model"],
)
def test_errors_carry_the_grpc_code_and_the_servers_message(rest, call, code, named):
    with pytest.raises(ClientError) as info:
        call(rest)
    assert info.value.code == code and named in info.value.message


def test_unreachable_server_is_unavailable():
    with RestClient("http://127.0.0.1:1", timeout_s=2) as client, pytest.raises(ClientError) as info:
        client.status("affine")
    assert info.value.code == "UNAVAILABLE"


def test_cli_over_rest_without_tensorflow(server, grpc_client):
    def cli(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "service.client", *argv], env=blocked_tf_env(), capture_output=True, text=True,
            timeout=60, check=False,
        )  # fmt: skip

    done = cli("predict", "--target", server.http_url, "--model", "affine", "--input", "x=[[1, 2, 3]]")
    assert done.returncode == 0, done.stderr
    reply = json.loads(done.stdout)
    assert reply["model_spec"] == {"name": "affine", "version": 2, "signature_name": "serving_default"}
    assert reply["outputs"]["y"] == {"dtype": "float32", "shape": [1, 3], "value": [[4.0, 7.0, 10.0]]}
    port = server.http_url.rsplit(":", 1)[1]
    status = cli("status", "--rest", "--target", f"127.0.0.1:{port}", "--model", "affine")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout) == {"model": "affine", **grpc_client.status("affine")}
    missing = cli("metadata", "--target", server.http_url, "--model", "nope")
    assert missing.returncode == 1 and missing.stderr.startswith("error: NOT_FOUND: ")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def mtls_server(model_repo, pki, tmp_path_factory):
    repo = copy_models(model_repo, tmp_path_factory.mktemp("rest-mtls") / "repo", "affine")
    security = {
        "tls_cert_file": pki["server"].cert, "tls_key_file": pki["server"].key,
        "tls_client_ca_file": pki["ca"].cert, "auth_tokens": [TOKEN],
    }  # fmt: skip
    thread = ServerThread(server_settings(repo, security=security)).start()
    yield thread
    thread.stop()


def test_mtls_and_tokens_over_https(mtls_server, pki):
    url = f"https://127.0.0.1:{mtls_server.server.http_port}"
    tls = {"ca_cert": pki["ca"].cert, "client_cert": pki["client"].cert, "client_key": pki["client"].key}
    with RestClient(url, token=TOKEN, timeout_s=30, **tls) as client:
        assert client.predict("affine", {"x": X})[1]["y"].tolist() == (X * 3 + 1).tolist()
    with RestClient(url, token="wrong-token", timeout_s=30, **tls) as client, pytest.raises(ClientError) as denied:
        client.status("affine")
    assert denied.value.code == "UNAUTHENTICATED"
    with (
        RestClient(url, token=TOKEN, ca_cert=pki["ca"].cert, timeout_s=10) as client,
        pytest.raises(ClientError) as bad,
    ):
        client.status("affine")  # no client certificate: the handshake fails
    assert bad.value.code == "UNAVAILABLE"
