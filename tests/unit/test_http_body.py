"""The HTTP body checks before parsing: JSON depth and value count bounded on the raw bytes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from service.errors import InvalidArgument, ResourceExhausted
from service.http.body import check_json_size, parse_json
from service.http.tensors import jsonable, numeric_array, string_array
from service.http.tfjson import dump_predictions


def _depth(value) -> int:
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    return 0


@pytest.mark.parametrize(
    "document",
    [
        {"instances": [[1, 2], [3, 4]]},
        [[[[]]]],
        {"a": {"b": {"c": [{}]}}},
        {"s": "[[[[[[[[[[[[[[[[", "t": '\\"[[[[[[[[[[[[', "u": "\\\\", "v": ["]]]]]]]]]]"]},
        [{"k[": "{{{{{{{{{{{{{{{{{{{"}, [], {}],
    ],
)
def test_depth_is_counted_exactly_and_strings_do_not_count(document):
    raw = json.dumps(document).encode()
    depth = _depth(document)
    check_json_size(raw, max_depth=depth, max_values=10**6)
    if depth > 2:
        with pytest.raises(ResourceExhausted, match="max_json_depth"):
            check_json_size(raw, max_depth=depth - 1, max_values=10**6)


def test_value_count_is_an_upper_bound_checked_before_parsing():
    raw = json.dumps({"instances": list(range(100))}).encode()
    check_json_size(raw, max_depth=4, max_values=100)
    with pytest.raises(ResourceExhausted, match="max_json_elements"):
        check_json_size(raw, max_depth=4, max_values=99)
    check_json_size(json.dumps(["a,b,c,d,e,f"]).encode(), max_depth=4, max_values=1)  # commas in strings


def test_unbalanced_documents_are_left_to_the_parser_which_names_the_position():
    with pytest.raises(InvalidArgument, match="not valid JSON"):
        parse_json(b"[" * 10_000, max_depth=8, max_values=100)
    with pytest.raises(InvalidArgument, match="not valid JSON"):
        parse_json(b'{"a": [1, 2}', max_depth=8, max_values=100)


def test_numbers_must_fit_the_dtype():
    assert numeric_array([[1, 2]], np.dtype(np.float32), "f").dtype == np.float32
    assert numeric_array([], np.dtype(np.int32), "f").shape == (0,)
    for value, dtype, words in (
        ([1.5], np.int32, "integers"),
        ([300], np.int8, "does not fit"),
        ([-1], np.uint8, "does not fit"),
        ([True], np.float32, "true/false"),
        ([1, "a"], np.float32, "strings"),
        ([2**70], np.int64, "too large"),
        ([[1], [1, 2]], np.float32, "different lengths"),
        ([None], np.float32, "nulls"),
    ):
        with pytest.raises(InvalidArgument, match=words):
            numeric_array(value, np.dtype(dtype), "inputs: input 'x'")


def test_strings_decode_b64_and_keep_their_shape():
    array = string_array([["a", {"b64": "/w=="}]], "f")
    assert array.shape == (1, 2) and array.tolist() == [[b"a", b"\xff"]]
    with pytest.raises(InvalidArgument, match="different lengths"):
        string_array([["a"], []], "f")
    with pytest.raises(InvalidArgument, match="a string"):
        string_array([1], "f", b64=False)
    assert jsonable(np.array([b"\xff", b"ok"], dtype=object), "out") == [{"b64": "/w=="}, "ok"]
    assert jsonable(np.array([b"ok"], dtype=object), "out_bytes") == [{"b64": "b2s="}]


def test_tf_serving_rest_reads_nan_and_infinities_as_numbers_and_strict_json_does_not():
    raw = b'{"inputs": [[NaN, Infinity, -Infinity, 1.5]]}'
    parsed = parse_json(raw, max_depth=8, max_values=100, non_finite=True)
    np.testing.assert_array_equal(np.asarray(parsed["inputs"]), [[np.nan, np.inf, -np.inf, 1.5]])
    with pytest.raises(InvalidArgument, match="not valid JSON"):
        parse_json(raw, max_depth=8, max_values=100)  # the v2 door: strict JSON
    with pytest.raises(InvalidArgument, match="not valid JSON"):
        parse_json(b'{"inputs": [NaN, }', max_depth=8, max_values=100, non_finite=True)  # still malformed
    with pytest.raises(ResourceExhausted, match="max_json_depth"):
        parse_json(b"[" * 20 + b"NaN" + b"]" * 20, max_depth=8, max_values=100, non_finite=True)


def test_replies_write_nan_and_infinities_as_tf_serving_does_and_keep_float32_digits():
    outputs = {"y": np.array([[0.1, np.nan], [np.inf, -np.inf]], np.float32), "n": np.array([3, 4], np.int64)}
    assert dump_predictions(outputs, row_format=True) == (
        b'{"predictions":[{"y":[0.1,NaN],"n":3},{"y":[Infinity,-Infinity],"n":4}]}'
    )
    finite = {"y": np.array([[0.1, 2.0]], np.float32)}
    assert dump_predictions(finite, row_format=False) == b'{"outputs":[[0.1,2.0]]}'  # orjson's fast path
    assert json.loads(dump_predictions(outputs, row_format=False))["outputs"]["y"][1] == [np.inf, -np.inf]
