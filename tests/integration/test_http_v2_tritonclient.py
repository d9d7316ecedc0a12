"""v2 REST through Triton's own `tritonclient.http`, run in its own virtualenv (it pins an older protobuf)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.support.repos import copy_models
from tests.support.server import ServerThread, server_settings
from tests.support.tritonclient_env import ensure_venv, run_client

TOKEN = "v2-rest-token-0123456789abcdef"

# Runs in tritonclient's venv: argv = base URL (host:port), the card's sample inputs, optional token.
CLIENT = r"""
import json, sys
import numpy as np
import tritonclient.http as http
from tritonclient.utils import InferenceServerException

url, features, token = sys.argv[1], np.array(json.loads(sys.argv[2]), np.float32), sys.argv[3]
headers = {"Authorization": f"Bearer {token}"} if token else None
client = http.InferenceServerClient(url)
out = {}

def attempt(name, call):
    try:
        out[name] = {"ok": call()}
    except InferenceServerException as exc:
        out[name] = {"status": exc.status(), "message": exc.message()}

def infer(model, tensors, binary_in, binary_out, outputs=None):
    inputs = []
    for name, value, datatype in tensors:
        tensor = http.InferInput(name, list(value.shape), datatype)
        tensor.set_data_from_numpy(value, binary_data=binary_in)
        inputs.append(tensor)
    wanted = [http.InferRequestedOutput(n, binary_data=binary_out) for n in outputs] if outputs else None
    result = client.infer(model, inputs, outputs=wanted, headers=headers, request_id="req-7")
    names = [o["name"] for o in result.get_response()["outputs"]]
    return {"id": result.get_response().get("id"),
            "outputs": {n: plain(result.as_numpy(n).tolist()) for n in names}}

def plain(value):
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value.decode() if isinstance(value, bytes) else value

attempt("live", lambda: client.is_server_live())
attempt("ready", lambda: client.is_server_ready())
attempt("model_ready", lambda: client.is_model_ready("mlp", headers=headers))
attempt("unknown_ready", lambda: client.is_model_ready("nope", headers=headers))
attempt("metadata", lambda: client.get_model_metadata("mlp", headers=headers))
attempt("server_metadata", lambda: client.get_server_metadata(headers=headers))
for binary_in in (False, True):
    for binary_out in (False, True):
        attempt(f"infer_{binary_in}_{binary_out}", lambda: infer(
            "mlp", [("features", features, "FP32")], binary_in, binary_out, ["probabilities"]))
text = np.array([b"abc", b"xyz"], dtype=np.object_)
attempt("strings_binary", lambda: infer("strings", [("text", text, "BYTES")], True, True, ["upper", "length"]))
attempt("strings_json", lambda: infer("strings", [("text", text, "BYTES")], False, False, ["upper"]))
attempt("all_outputs_binary", lambda: infer("mlp", [("features", features, "FP32")], True, True))
attempt("unknown_model", lambda: infer("nope", [("features", features, "FP32")], False, False))
attempt("wrong_shape", lambda: infer("mlp", [("features", features[:, :3].copy(), "FP32")], True, False))
attempt("wrong_dtype", lambda: infer("mlp", [("features", features.astype(np.int32), "INT32")], True, False))
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def triton_python():
    return ensure_venv()


@pytest.fixture(scope="module")
def auth_server(model_repo, tmp_path_factory):
    repo = copy_models(model_repo, tmp_path_factory.mktemp("v2auth") / "repo", "mlp", "strings")
    thread = ServerThread(server_settings(repo, security={"auth_tokens": [TOKEN]})).start()
    yield thread
    thread.stop()


def _samples(model_repo):
    card = json.loads((model_repo / "mlp" / "1" / "model_card.json").read_text())
    return card["samples"]["inputs"]["features"], np.array(card["samples"]["outputs"]["probabilities"])


def _run(server, model_repo, triton_python, token: str = "") -> dict:
    features, _ = _samples(model_repo)
    url = f"127.0.0.1:{server.server.http_port}"
    return run_client(CLIENT, url, json.dumps(features), token, python=triton_python)


@pytest.mark.slow
def test_tritonclient_http_health_metadata_and_infer(server, model_repo, triton_python):
    out = _run(server, model_repo, triton_python)
    assert out["live"] == {"ok": True} and out["ready"] == {"ok": True}
    assert out["model_ready"] == {"ok": True}
    assert out["unknown_ready"] == {"ok": False}
    metadata = out["metadata"]["ok"]
    assert metadata["name"] == "mlp" and metadata["versions"] == ["1"]
    assert metadata["inputs"] == [{"name": "features", "datatype": "FP32", "shape": [-1, 4]}]
    assert metadata["outputs"] == [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]}]
    assert "binary_tensor_data" in out["server_metadata"]["ok"]["extensions"]
    _, expected = _samples(model_repo)
    for key in ("infer_False_False", "infer_False_True", "infer_True_False", "infer_True_True", "all_outputs_binary"):
        answer = out[key]["ok"]
        assert answer["id"] == "req-7"
        np.testing.assert_allclose(answer["outputs"]["probabilities"], expected, rtol=1e-5, atol=1e-6)
    strings = out["strings_binary"]["ok"]["outputs"]
    assert strings["length"] == [3, 3]
    assert out["strings_json"]["ok"]["outputs"]["upper"] == ["ABC", "XYZ"]


@pytest.mark.slow
def test_tritonclient_http_errors_name_the_input(server, model_repo, triton_python):
    out = _run(server, model_repo, triton_python)
    assert out["unknown_model"]["status"] == "404" and "'nope'" in out["unknown_model"]["message"]
    for key, words in (("wrong_shape", ["'features'", "shape"]), ("wrong_dtype", ["'features'", "float32", "int32"])):
        assert out[key]["status"] == "400", out[key]
        for word in words:
            assert word in out[key]["message"]


@pytest.mark.slow
def test_tritonclient_http_auth(auth_server, model_repo, triton_python):
    refused = _run(auth_server, model_repo, triton_python)
    assert refused["live"] == {"ok": True} and refused["ready"] == {"ok": True}  # health needs no token
    assert refused["infer_True_True"]["status"] == "401"
    assert "bearer token" in refused["infer_True_True"]["message"]
    allowed = _run(auth_server, model_repo, triton_python, TOKEN)
    assert allowed["model_ready"] == {"ok": True}
    assert "ok" in allowed["infer_True_True"]
