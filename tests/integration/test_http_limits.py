"""Size limits on the HTTP port: body bytes before reading, JSON depth and value count before parsing."""

from __future__ import annotations

import json
import socket

import pytest
import requests

from tests.support.repos import copy_models
from tests.support.server import ServerThread, server_settings

LIMITS = {"max_body_bytes": 4096, "max_json_depth": 8, "max_json_elements": 200}


@pytest.fixture(scope="module")
def small_server(model_repo, tmp_path_factory):
    repo = copy_models(model_repo, tmp_path_factory.mktemp("http-limits") / "repo", "affine")
    thread = ServerThread(server_settings(repo, http=LIMITS)).start()
    yield thread
    thread.stop()


def _predict(thread, data: bytes, path="/v1/models/affine:predict") -> requests.Response:
    return requests.post(thread.http_url + path, data=data, timeout=10, headers={"Content-Type": "application/json"})


def test_a_body_over_the_limit_is_refused_by_its_content_length_before_it_is_sent(small_server):
    """The client announces 10 MB and sends nothing more: the answer comes from the header alone."""
    with socket.create_connection(("127.0.0.1", small_server.server.http_port), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/models/affine:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 10000000\r\n\r\n"
        )
        head = sock.recv(65536).decode("latin-1")
    assert head.startswith("HTTP/1.1 413"), head
    assert "max_body_bytes" in head


def test_a_chunked_body_over_the_limit_is_refused(small_server):
    chunks = (b"[" + b"1," * 500 + b"1]" for _ in range(10))
    reply = requests.post(small_server.http_url + "/v2/models/affine/infer", data=chunks, timeout=10)
    assert reply.status_code == 413
    assert "max_body_bytes" in reply.json()["error"]


def test_json_nested_deeper_than_the_limit_is_refused_before_parsing(small_server):
    deep = b'{"instances": ' + b"[" * 20 + b"]" * 20 + b"}"
    reply = _predict(small_server, deep)
    assert reply.status_code == 413
    assert "max_json_depth" in reply.json()["error"]
    brackets_in_strings = json.dumps({"instances": [["[[[[[[[[[[[[", "]]]]]]]]]]]]", "{{{{{{{{{{"]]}).encode()
    assert _predict(small_server, brackets_in_strings).status_code == 400  # strings: not nesting (wrong dtype)


def test_more_json_values_than_the_limit_are_refused(small_server):
    reply = _predict(small_server, json.dumps({"instances": [[1.0, 2.0, 3.0]] * 70}).encode())
    assert reply.status_code == 413
    assert "max_json_elements" in reply.json()["error"]
    assert _predict(small_server, json.dumps({"instances": [[1.0, 2.0, 3.0]] * 40}).encode()).status_code == 200


@pytest.mark.parametrize("raw", [b"", b"{", b'{"instances": [1, 2', b"\xff\xfe", b"[1]]", b'{"a": "\\"}'])
def test_malformed_json_is_a_400_that_says_so(small_server, raw):
    for path in ("/v1/models/affine:predict", "/v2/models/affine/infer"):
        reply = _predict(small_server, raw, path)
        assert reply.status_code == 400, (raw, reply.text)
        assert "JSON" in reply.json()["error"] or "request body" in reply.json()["error"]


def test_compressed_bodies_are_refused_not_expanded(small_server):
    import gzip

    small = gzip.compress(json.dumps({"instances": [[1.0, 2.0, 3.0]]}).encode())  # would expand 10x, 1000x...
    reply = requests.post(
        small_server.http_url + "/v1/models/affine:predict",
        data=small,
        timeout=10,
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
    )
    assert reply.status_code == 400
    assert "Content-Encoding" in reply.json()["error"]


def test_a_body_shorter_than_its_content_length_is_a_client_error(small_server):
    with socket.create_connection(("127.0.0.1", small_server.server.http_port), timeout=10) as sock:
        sock.sendall(b'POST /v1/models/affine:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"inst')
        sock.shutdown(socket.SHUT_WR)
        head = sock.recv(65536).decode("latin-1")
    assert head == "" or head.startswith("HTTP/1.1 400"), head  # answered, or closed: never a 500
    assert requests.get(small_server.http_url + "/v2/health/live", timeout=10).status_code == 200


def test_a_request_over_the_timeout_gets_504_and_leaves_the_queue(model_repo, tmp_path, start_server):
    """A batch that would wait 3 s holds the request; http.request_timeout_ms (300) ends it first, like
    TF Serving's rest_api_timeout_in_ms, and nothing of it stays queued."""
    repo = copy_models(model_repo, tmp_path / "repo", "affine")
    slow = {"mode": "fixed", "batch_timeout_ms": 3000, "batch_idle_timeout_ms": 0}
    thread = start_server(server_settings(repo, batching=slow, http={"request_timeout_ms": 300}))
    bodies = {
        "/v1/models/affine:predict": {"instances": [[1.0, 2.0, 3.0]]},
        "/v2/models/affine/infer": {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]},
    }
    for path, body in bodies.items():
        reply = _predict(thread, json.dumps(body).encode(), path)
        assert reply.status_code == 504, reply.text
        assert "http.request_timeout_ms=300" in reply.json()["error"]

    async def queued_rows() -> int:
        return thread.server.manager.resolve("affine").batchers["serving_default"].queue_rows  # the version both used

    assert thread.call(queued_rows()) == 0
    assert requests.get(thread.http_url + "/v1/models/affine", timeout=10).status_code == 200  # still serving
