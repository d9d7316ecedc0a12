"""service.rest_client's JSON codec and paths: every dtype survives TF Serving REST JSON; no server needed here.

The client against a real server is tests/integration/test_rest_client.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from service.api import types_pb2
from service.client import ClientError
from service.errors import InvalidArgument
from service.rest_client import decode_outputs, encode_tensor, is_rest_target, model_path
from service.rpc.codec import datatype_of
from tests.support.tensors import DTYPES, sample_array


def _spec(dtype: np.dtype) -> dict:
    return {"dtype": types_pb2.DataType.Name(datatype_of(dtype))}


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_every_dtype_round_trips_through_json(dtype):
    array = sample_array(dtype, (3, 2))
    wire = json.loads(json.dumps({"outputs": {"t": encode_tensor("t", array)}}))
    decoded = decode_outputs(wire, {"t": _spec(dtype)})["t"]
    assert decoded.dtype == array.dtype and decoded.shape == array.shape
    if dtype.kind == "O":
        assert decoded.tolist() == array.tolist()
    else:
        np.testing.assert_array_equal(decoded, array)


def test_strings_travel_as_b64_and_plain_text_replies_are_accepted():
    assert encode_tensor("s", np.array([b"\xff\x00", "caf\u00e9"], dtype=object)) == [
        {"b64": "/wA="},
        {"b64": "Y2Fmw6k="},
    ]
    decoded = decode_outputs({"outputs": ["plain", {"b64": "/wA="}]}, {"s": {"dtype": "DT_STRING"}})
    assert decoded["s"].tolist() == [b"plain", b"\xff\x00"]
    scalar = decode_outputs({"outputs": {"b64": "/wA="}}, {"s": {"dtype": "DT_STRING"}})  # a scalar, unnamed
    assert scalar["s"].shape == () and scalar["s"].item() == b"\xff\x00"


def test_an_unnamed_output_needs_a_single_output_signature():
    assert decode_outputs({"outputs": [1.5]}, {"y": {"dtype": "DT_FLOAT"}})["y"].dtype == np.float32
    with pytest.raises(ClientError, match="unnamed output"):
        decode_outputs({"outputs": [1.5]}, {"y": {}, "z": {}})
    with pytest.raises(ClientError, match='no "outputs"'):
        decode_outputs({"predictions": [1.5]}, {"y": {}})


def test_inputs_that_json_cannot_carry_are_refused_naming_the_input():
    with pytest.raises(InvalidArgument, match="input 'c'"):
        encode_tensor("c", np.array([1 + 2j]))
    with pytest.raises(InvalidArgument, match="input 's'"):
        encode_tensor("s", np.array([3, "x"], dtype=object))


def test_model_paths_and_targets():
    assert model_path("m", None, None) == "/v1/models/m"
    assert model_path("m", 3, None) == "/v1/models/m/versions/3"
    assert model_path("a b/c", None, "can ary") == "/v1/models/a%20b%2Fc/labels/can%20ary"
    with pytest.raises(ValueError, match="not both"):
        model_path("m", 1, "stable")
    assert is_rest_target("http://h:8501") and is_rest_target("https://h") and not is_rest_target("h:8500")
