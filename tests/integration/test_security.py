"""TLS, mutual TLS and bearer tokens on the gRPC port, with throwaway certificates made at run time."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service.api import model_management_pb2, model_service_pb2_grpc
from service.client import BatchwiseClient, ClientError
from tests.support.certs import make_pki
from tests.support.repos import copy_models
from tests.support.server import ServerThread, server_settings

FILE_TOKENS = ["file-token-0123456789abcdef", "second-file-token-fedcba9876543210"]
SETTING_TOKEN = "setting-token-00112233445566778899"
X = np.ones((1, 3), np.float32)
SERVING = health_pb2.HealthCheckResponse.SERVING


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def repo(model_repo, tmp_path_factory):
    return copy_models(model_repo, tmp_path_factory.mktemp("security") / "repo", "affine")


@pytest.fixture(scope="module")
def tls_server(repo, pki, tmp_path_factory):
    """TLS (no client certificates) and bearer tokens from a file and from the settings."""
    token_file = tmp_path_factory.mktemp("tokens") / "tokens.txt"
    token_file.write_text(f"# one token per line\n{FILE_TOKENS[0]}\n\n  {FILE_TOKENS[1]}  \n")
    security = {
        "tls_cert_file": pki["server"].cert, "tls_key_file": pki["server"].key,
        "auth_token_file": token_file, "auth_tokens": [SETTING_TOKEN],
    }
    thread = ServerThread(server_settings(repo, security=security)).start()
    yield thread
    thread.stop()


@pytest.fixture(scope="module")
def mtls_server(repo, pki):
    security = {
        "tls_cert_file": pki["server"].cert, "tls_key_file": pki["server"].key,
        "tls_client_ca_file": pki["ca"].cert,
    }
    thread = ServerThread(server_settings(repo, security=security)).start()
    yield thread
    thread.stop()


def _tls_channel(target: str, pki, client: str | None = None) -> grpc.Channel:
    pair = pki[client] if client else None
    credentials = grpc.ssl_channel_credentials(
        root_certificates=pki["ca"].cert.read_bytes(),
        private_key=pair.key.read_bytes() if pair else None,
        certificate_chain=pair.cert.read_bytes() if pair else None,
    )
    return grpc.secure_channel(target, credentials)


def _code(call) -> str:
    with pytest.raises(ClientError) as info:
        call()
    return info.value.code


def test_plaintext_clients_are_refused_when_tls_is_on(tls_server):
    with BatchwiseClient(tls_server.target, token=FILE_TOKENS[0], timeout_s=10) as client:
        assert _code(lambda: client.predict("affine", {"x": X})) == "UNAVAILABLE"
    with grpc.insecure_channel(tls_server.target) as channel, pytest.raises(grpc.RpcError) as probe:
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert probe.value.code() == grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize("token", [*FILE_TOKENS, SETTING_TOKEN], ids=["file-1", "file-2", "setting"])
def test_every_configured_token_is_accepted_on_every_method(tls_server, pki, token):
    with BatchwiseClient(tls_server.target, token=token, ca_cert=pki["ca"].cert, timeout_s=30) as client:
        version, outputs = client.predict("affine", {"x": X})
        assert version == 2 and outputs["y"].tolist() == [[4.0, 4.0, 4.0]]
        assert client.metadata("affine")["model_spec"]["version"] == 2
        assert client.status("affine")["model_version_status"][0]["state"] == "AVAILABLE"


@pytest.mark.parametrize("token", [None, "wrong-token", FILE_TOKENS[0][:-1], FILE_TOKENS[0] + "x"],
                         ids=["missing", "wrong", "prefix", "longer"])
def test_missing_or_wrong_tokens_are_unauthenticated(tls_server, pki, token):
    with BatchwiseClient(tls_server.target, token=token, ca_cert=pki["ca"].cert, timeout_s=10) as client:
        for call in (lambda: client.predict("affine", {"x": X}), lambda: client.metadata("affine"),
                     lambda: client.status("affine")):
            with pytest.raises(ClientError) as info:
                call()
            assert info.value.code == "UNAUTHENTICATED"
            assert token is None or token not in info.value.message


def test_auth_is_checked_before_the_message_is_parsed(tls_server, pki):
    with _tls_channel(tls_server.target, pki) as channel:
        raw = channel.unary_unary("/tensorflow.serving.PredictionService/Predict")
        with pytest.raises(grpc.RpcError) as info:
            raw(b"\xff\xff\xff", timeout=10, metadata=[("authorization", "Basic dXNlcjpwYXNz")])
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "expected 'Bearer <token>'" in info.value.details()


def test_model_control_needs_a_token_and_is_off_by_default(tls_server, pki):
    with _tls_channel(tls_server.target, pki) as channel:
        stub = model_service_pb2_grpc.ModelServiceStub(channel)
        request = model_management_pb2.ReloadConfigRequest()
        with pytest.raises(grpc.RpcError) as anonymous:
            stub.HandleReloadConfigRequest(request, timeout=10)
        assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as authorized:
            stub.HandleReloadConfigRequest(request, timeout=10, metadata=[("authorization", f"Bearer {SETTING_TOKEN}")])
        assert authorized.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_reflection_needs_a_token(tls_server, pki):
    request = b"\x3a\x00"  # ServerReflectionRequest{list_services: ""}
    with _tls_channel(tls_server.target, pki) as channel:
        info = channel.stream_stream("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo")
        with pytest.raises(grpc.RpcError) as anonymous:
            list(info(iter([request]), timeout=10))
        assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED
        replies = list(info(iter([request]), timeout=10, metadata=[("authorization", f"Bearer {SETTING_TOKEN}")]))
        assert b"tensorflow.serving.PredictionService" in replies[0]


def test_health_needs_no_token(tls_server, pki):
    with _tls_channel(tls_server.target, pki) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert reply.status == SERVING


@pytest.mark.parametrize("client_cert", [None, "stranger"], ids=["no-client-cert", "unknown-ca"])
def test_mtls_refuses_clients_without_a_certificate_from_the_ca(mtls_server, pki, client_cert):
    pair = pki[client_cert] if client_cert else None
    with BatchwiseClient(mtls_server.target, ca_cert=pki["ca"].cert, client_cert=pair and pair.cert,
                         client_key=pair and pair.key, timeout_s=10) as client:
        assert _code(lambda: client.predict("affine", {"x": X})) == "UNAVAILABLE"
    with _tls_channel(mtls_server.target, pki, client_cert) as channel, pytest.raises(grpc.RpcError) as probe:
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert probe.value.code() == grpc.StatusCode.UNAVAILABLE


def test_mtls_accepts_a_client_certificate_from_the_ca(mtls_server, pki):
    with BatchwiseClient(mtls_server.target, ca_cert=pki["ca"].cert, client_cert=pki["client"].cert,
                         client_key=pki["client"].key, timeout_s=30) as client:
        assert client.predict("affine", {"x": X})[0] == 2
