"""TF Serving's REST API on the HTTP port, driven with `requests` as TF Serving's REST documentation shows it."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
import requests

from tests.support.models import build_repository  # noqa: F401 - the session repository comes from conftest

X = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]


def _card(model_repo, model="mlp", version=1) -> dict:
    return json.loads((model_repo / model / str(version) / "model_card.json").read_text())


def _post(server, path: str, body, **kwargs) -> requests.Response:
    return requests.post(server.http_url + path, json=body, timeout=30, **kwargs)


def test_status_of_all_versions_one_version_and_a_label(server):
    every = requests.get(server.http_url + "/v1/models/affine", timeout=10)
    assert every.status_code == 200
    assert every.headers["Content-Type"].startswith("application/json")
    assert every.headers["Server"] == "batchwise"  # no Python or aiohttp versions
    assert requests.get(server.http_url + "/nowhere", timeout=10).headers["Server"] == "batchwise"
    assert every.json() == {
        "model_version_status": [
            {"version": v, "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}} for v in "12"
        ]
    }
    two = requests.get(server.http_url + "/v1/models/affine/versions/2", timeout=10).json()
    assert [s["version"] for s in two["model_version_status"]] == ["2"]
    stable = requests.get(server.http_url + "/v1/models/affine/labels/stable", timeout=10).json()
    assert [s["version"] for s in stable["model_version_status"]] == ["1"]


def test_metadata_is_the_signature_def_map_as_tf_serving_writes_it(server):
    reply = requests.get(server.http_url + "/v1/models/affine/versions/1/metadata", timeout=10)
    assert reply.status_code == 200
    body = reply.json()
    assert body["model_spec"] == {"name": "affine", "signature_name": "", "version": "1"}
    signatures = body["metadata"]["signature_def"]["signature_def"]
    assert set(signatures) == {"serving_default", "total_only"}
    x = signatures["serving_default"]["inputs"]["x"]
    assert x["dtype"] == "DT_FLOAT"
    assert x["tensor_shape"]["dim"] == [{"size": "-1", "name": ""}, {"size": "3", "name": ""}]
    assert signatures["serving_default"]["method_name"] == "tensorflow/serving/predict"


def test_row_format_predict_matches_the_models_own_outputs(server, model_repo):
    samples = _card(model_repo)["samples"]
    reply = _post(server, "/v1/models/mlp:predict", {"instances": samples["inputs"]["features"]})
    assert reply.status_code == 200, reply.text
    predictions = np.array(reply.json()["predictions"])  # one output: the bare value per row
    np.testing.assert_allclose(predictions, samples["outputs"]["probabilities"], rtol=1e-5, atol=1e-6)


def test_row_format_with_named_inputs_and_several_outputs_answers_an_object_per_row(server):
    reply = _post(server, "/v1/models/affine/versions/1:predict", {"instances": [{"x": row} for row in X]})
    assert reply.status_code == 200, reply.text
    y = np.array(X) * 2 + 1
    assert reply.json() == {"predictions": [{"y": list(r), "total": float(r.sum())} for r in y]}


def test_columnar_format_answers_outputs_by_name_and_a_bare_value_for_one_output(server):
    both = _post(server, "/v1/models/affine/labels/stable:predict", {"inputs": {"x": X}}).json()
    y = np.array(X) * 2 + 1
    np.testing.assert_allclose(both["outputs"]["y"], y)
    np.testing.assert_allclose(both["outputs"]["total"], y.sum(axis=1))
    one = _post(server, "/v1/models/affine/versions/1:predict", {"signature_name": "total_only", "inputs": X}).json()
    np.testing.assert_allclose(one["outputs"], y.sum(axis=1))


def test_nan_and_infinities_travel_both_ways_as_tf_serving_writes_them(server):
    body = '{"inputs": {"x": [[NaN, Infinity, -Infinity], [1.0, 2.0, 3.0]]}}'  # not strict JSON: TF Serving's
    reply = requests.post(server.http_url + "/v1/models/affine/versions/1:predict", data=body, timeout=30)
    assert reply.status_code == 200, reply.text
    assert "NaN" in reply.text and "-Infinity" in reply.text and "null" not in reply.text
    outputs = json.loads(reply.text)["outputs"]  # Python's json reads them back
    np.testing.assert_array_equal(outputs["y"], [[np.nan, np.inf, -np.inf], [3.0, 5.0, 7.0]])
    np.testing.assert_array_equal(outputs["total"], [np.nan, 15.0])
    strict = requests.post(server.http_url + "/v2/models/affine/versions/1/infer", timeout=30, data=(
        '{"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [NaN, 1, 2]}]}'
    ))
    assert strict.status_code == 400 and "not valid JSON" in strict.json()["error"]  # v2 REST stays strict JSON


def test_strings_accept_b64_and_text(server):
    instances = ["abc", {"b64": base64.b64encode(b"xy\xc3\xa9").decode()}]
    reply = _post(server, "/v1/models/strings:predict", {"instances": instances})
    assert reply.status_code == 200, reply.text
    assert reply.json()["predictions"] == [{"length": 3, "upper": "ABC"}, {"length": 4, "upper": "XYé"}]


@pytest.mark.parametrize(
    ("path", "body", "status", "words"),
    [
        ("/v1/models/nope:predict", {"instances": X}, 404, ["'nope'"]),
        ("/v1/models/affine/versions/9:predict", {"instances": X}, 404, ["version 9"]),
        ("/v1/models/affine:predict", {"instances": [[1.0, 2.0]]}, 400, ["'x'", "shape"]),
        ("/v1/models/affine:predict", {"instances": [["a", "b", "c"]]}, 400, ["'x'", "float32", "strings"]),
        ("/v1/models/affine:predict", {"inputs": {"z": X}}, 400, ["'z'", "'x'"]),
        ("/v1/models/affine:predict", {"instances": [[1, 2, 3], [4, 5]]}, 400, ["'x'", "different lengths"]),
        ("/v1/models/affine:predict", {"instances": X, "inputs": X}, 400, ["instances", "inputs"]),
        ("/v1/models/affine:predict", {"instances": {}}, 400, ["instances"]),
        ("/v1/models/affine:predict", {"signature_name": 3, "instances": X}, 400, ["signature_name"]),
        ("/v1/models/affine:predict", {"signature_name": "nope", "instances": X}, 400, ["'nope'"]),
        ("/v1/models/strings:predict", {"instances": [{"b64": "**"}]}, 400, ["b64"]),
        ("/v1/models/strings:predict", {"instances": [3]}, 400, ["'text'", "string"]),
        # large enough for the numpy fast path (service/http/jsondoc.py): the same answers
        ("/v1/models/affine:predict", {"instances": [[1.0, 2.0]] * 40}, 400, ["'x'", "shape"]),
        ("/v1/models/affine:predict", {"instances": [[1, 2, 3]] * 40 + [[4, 5]]}, 400, ["'x'", "different lengths"]),
        ("/v1/models/affine:predict", {"instances": [[1, 2, 3]] * 40 + [[4, 5, "6"]]}, 400, ["'x'", "float32"]),
        ("/v1/models/strings:predict", {"instances": list(range(40))}, 400, ["'text'", "string"]),
        ("/v1/models/affine:classify", {"examples": []}, 501, [":classify"]),
        ("/v1/models/affine/versions/zero:predict", {"instances": X}, 400, ["version"]),
    ],
)
def test_client_errors_answer_tf_servings_status_and_name_the_field(server, path, body, status, words):
    reply = _post(server, path, body)
    assert reply.status_code == status, reply.text
    message = reply.json()["error"]
    for word in words:
        assert word in message


def test_malformed_json_and_wrong_methods(server):
    reply = requests.post(server.http_url + "/v1/models/affine:predict", data=b'{"instances": [1,', timeout=10)
    assert reply.status_code == 400
    assert "not valid JSON" in reply.json()["error"]
    wrong = requests.get(server.http_url + "/v1/models/affine:predict", timeout=10)
    assert wrong.status_code == 405 and wrong.headers["Allow"] == "POST"
    unknown = requests.get(server.http_url + "/v1/elsewhere", timeout=10)
    assert unknown.status_code == 404 and "error" in unknown.json()


def test_the_variant_header_picks_the_version_variant(server):
    reply = _post(server, "/v1/models/affine:predict", {"instances": X}, headers={"x-batchwise-variant": "int8"})
    assert reply.status_code == 404  # the SavedModel-only test models have no int8 variant
    assert "int8" in reply.json()["error"]
