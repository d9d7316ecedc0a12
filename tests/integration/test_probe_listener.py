"""Probes with TLS on: the plaintext health-only listener (server.health_port) answers kubelet-style probes.

Kubernetes' native gRPC probes speak plaintext without a client certificate. With TLS or mTLS on
the API port they cannot connect there; server.health_port serves grpc.health.v1 alone in
plaintext, and these tests probe it exactly as the kubelet would while the API port keeps
refusing plaintext.
"""

from __future__ import annotations

import ssl
import threading
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service.client import BatchwiseClient, ClientError
from service.healthcheck import check_health
from tests.support.certs import make_pki
from tests.support.repos import copy_models
from tests.support.server import ServerThread, server_settings

TOKEN = "probe-test-token-0123456789abcdef"
X = np.ones((1, 3), np.float32)
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def repo(model_repo, tmp_path_factory):
    return copy_models(model_repo, tmp_path_factory.mktemp("probes") / "repo", "affine")


def _start(repo, pki, *, mtls: bool) -> ServerThread:
    security = {"tls_cert_file": pki["server"].cert, "tls_key_file": pki["server"].key, "auth_tokens": [TOKEN]}
    if mtls:
        security["tls_client_ca_file"] = pki["ca"].cert
    return ServerThread(server_settings(repo, server={"health_port": 0}, security=security)).start()


@pytest.fixture(scope="module", params=["tls", "mtls"])
def secure_server(request, repo, pki):
    thread = _start(repo, pki, mtls=request.param == "mtls")
    yield thread
    thread.stop()


def _health_target(thread: ServerThread) -> str:
    return f"127.0.0.1:{thread.server.health_port}"


def test_probe_port_answers_plaintext_health_like_the_kubelet(secure_server):
    port = secure_server.server.health_port
    assert port and port != secure_server.port
    assert check_health(_health_target(secure_server), timeout_s=10) == "SERVING"
    assert check_health(_health_target(secure_server), "liveness", timeout_s=10) == "SERVING"
    assert check_health(_health_target(secure_server), "affine", timeout_s=10) == "SERVING"
    with pytest.raises(grpc.RpcError) as unknown:
        check_health(_health_target(secure_server), "no-such-model", timeout_s=10)
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND


def test_api_port_still_refuses_plaintext(secure_server):
    with pytest.raises(grpc.RpcError) as probe:
        check_health(secure_server.target, timeout_s=10)
    assert probe.value.code() == grpc.StatusCode.UNAVAILABLE
    with BatchwiseClient(secure_server.target, token=TOKEN, timeout_s=10) as client, pytest.raises(ClientError) as info:
        client.predict("affine", {"x": X})
    assert info.value.code == "UNAVAILABLE"


@pytest.mark.parametrize(
    "method",
    [
        "/tensorflow.serving.PredictionService/Predict",
        "/tensorflow.serving.ModelService/GetModelStatus",
        "/tensorflow.serving.PredictionService/GetModelMetadata",
    ],
)
def test_probe_port_serves_nothing_but_health(secure_server, method):
    with grpc.insecure_channel(_health_target(secure_server)) as channel, pytest.raises(grpc.RpcError) as info:
        channel.unary_unary(method)(b"", timeout=10, metadata=[("authorization", f"Bearer {TOKEN}")])
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_probe_port_has_no_reflection(secure_server):
    with grpc.insecure_channel(_health_target(secure_server)) as channel, pytest.raises(grpc.RpcError) as info:
        stream = channel.stream_stream("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo")
        list(stream(iter([b"\x3a\x00"]), timeout=10))
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_health_port_is_off_by_default(repo, pki):
    thread = ServerThread(server_settings(repo)).start()
    try:
        assert thread.server.health_port is None
    finally:
        thread.stop()


def test_probe_port_reports_not_serving_through_the_drain(repo, pki):
    """A Watch on the probe port (as a readiness checker keeps) sees NOT_SERVING when the drain starts."""
    thread = _start(repo, pki, mtls=True)
    seen: list[int] = []
    watching = threading.Event()
    with grpc.insecure_channel(_health_target(thread)) as channel:
        stream = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(), timeout=30)

        def read() -> None:
            for reply in stream:
                seen.append(reply.status)
                watching.set()

        reader = threading.Thread(target=read)
        reader.start()
        assert watching.wait(10)
        thread.stop()
        reader.join(15)
    assert not reader.is_alive()
    assert seen == [SERVING, NOT_SERVING]


def test_https_readiness_probe_works_with_tls_but_not_mtls(secure_server, request):
    """The documented alternative, as kubelet's HTTPS probe does it: no certificate check, no client certificate."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    url = f"https://127.0.0.1:{secure_server.server.http_port}/v2/health/ready"
    if request.node.callspec.params["secure_server"] == "tls":
        with urllib.request.urlopen(url, context=context, timeout=10) as reply:
            assert reply.status == 200
    else:
        with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
            urllib.request.urlopen(url, context=context, timeout=10).close()
