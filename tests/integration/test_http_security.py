"""TLS, mutual TLS and bearer tokens on the HTTP port, with the same security settings as the gRPC port."""

from __future__ import annotations

import pytest
import requests

from tests.support.certs import make_pki
from tests.support.repos import copy_models
from tests.support.server import ServerThread, server_settings

TOKEN = "http-token-0123456789abcdef"
BODY = {"instances": [[1.0, 2.0, 3.0]]}


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def repo(model_repo, tmp_path_factory):
    return copy_models(model_repo, tmp_path_factory.mktemp("http-security") / "repo", "affine")


@pytest.fixture(scope="module")
def tls_server(repo, pki):
    security = {"tls_cert_file": pki["server"].cert, "tls_key_file": pki["server"].key, "auth_tokens": [TOKEN]}
    thread = ServerThread(server_settings(repo, security=security)).start()
    yield thread
    thread.stop()


@pytest.fixture(scope="module")
def mtls_server(repo, pki):
    security = {
        "tls_cert_file": pki["server"].cert,
        "tls_key_file": pki["server"].key,
        "tls_client_ca_file": pki["ca"].cert,
    }
    thread = ServerThread(server_settings(repo, security=security)).start()
    yield thread
    thread.stop()


def _url(thread: ServerThread, path: str) -> str:
    return f"https://127.0.0.1:{thread.server.http_port}{path}"


def test_tls_with_a_token_serves_rest_and_v2(tls_server, pki):
    headers = {"Authorization": f"Bearer {TOKEN}"}
    ca = str(pki["ca"].cert)
    reply = requests.post(
        _url(tls_server, "/v1/models/affine:predict"), json=BODY, headers=headers, verify=ca, timeout=10
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["predictions"][0]["total"] == pytest.approx(21.0)  # version 2: x * 3 + 1
    metadata = requests.get(_url(tls_server, "/v2/models/affine"), headers=headers, verify=ca, timeout=10)
    assert metadata.status_code == 200 and metadata.json()["name"] == "affine"


@pytest.mark.parametrize(
    ("authorization", "words"),
    [(None, "missing bearer token"), ("Bearer wrong-token", "invalid bearer token"), (f"Basic {TOKEN}", "malformed")],
)
def test_requests_without_a_valid_token_get_401_on_every_door(tls_server, pki, authorization, words):
    headers = {"Authorization": authorization} if authorization else {}
    ca = str(pki["ca"].cert)
    for method, path in (
        ("POST", "/v1/models/affine:predict"),
        ("GET", "/v1/models/affine"),
        ("POST", "/v2/models/affine/infer"),
        ("GET", "/v2/models/affine/ready"),
    ):
        reply = requests.request(method, _url(tls_server, path), json=BODY, headers=headers, verify=ca, timeout=10)
        assert reply.status_code == 401, (path, reply.text)
        assert words in reply.json()["error"]
        assert reply.headers["WWW-Authenticate"] == "Bearer"
        assert TOKEN not in reply.text


def test_health_needs_no_token(tls_server, pki):
    for path in ("/v2/health/live", "/v2/health/ready"):
        assert requests.get(_url(tls_server, path), verify=str(pki["ca"].cert), timeout=10).status_code == 200


def test_plaintext_is_refused_on_a_tls_port(tls_server):
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{tls_server.server.http_port}/v2/health/live", timeout=10)


def test_mtls_needs_a_client_certificate_from_the_ca(mtls_server, pki):
    ca = str(pki["ca"].cert)
    client = (str(pki["client"].cert), str(pki["client"].key))
    reply = requests.post(_url(mtls_server, "/v1/models/affine:predict"), json=BODY, cert=client, verify=ca, timeout=10)
    assert reply.status_code == 200, reply.text
    for cert in (None, (str(pki["stranger"].cert), str(pki["stranger"].key))):
        with pytest.raises((requests.exceptions.SSLError, requests.ConnectionError)):
            requests.post(_url(mtls_server, "/v1/models/affine:predict"), json=BODY, cert=cert, verify=ca, timeout=10)
