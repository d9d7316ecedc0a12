"""service.http.jsondoc: numeric tensors come back as the arrays np.asarray makes of orjson's lists,
and nothing else changes: the same documents, the same values, the same decoded requests and errors.

The differential tests parse with min_tensor_values=0, so that every array of every generated document
takes the tensor path, not only the large ones a real client sends.
"""

from __future__ import annotations

import json
from functools import partial

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.errors import InvalidArgument
from service.http import jsondoc
from service.http.tfjson import decode_predict_request
from service.http.v2json import decode_infer
from service.runtime.base import SignatureSpec, TensorSpec
from tests.support import http_fuzz

NUMBERS = st.one_of(st.integers(-(2**70), 2**70), st.floats(allow_nan=False, allow_infinity=False))
LEAVES = st.one_of(NUMBERS, st.booleans(), st.none(), st.text(max_size=3))
DOCUMENTS = st.recursive(
    LEAVES,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=4), inner, max_size=3)),
    max_leaves=30,
)
every_array = partial(jsondoc.loads, min_tensor_values=0)
SPEC = SignatureSpec(
    "serving_default",
    {"x": TensorSpec("x", np.dtype(np.float32), (None, 3))},
    {"y": TensorSpec("y", np.dtype(np.float32), (None, 3))},
)


@st.composite
def regular_arrays(draw):
    """Dense nested lists of integers or numbers, sometimes with one row made ragged."""
    shape = draw(st.lists(st.integers(1, 4), min_size=1, max_size=4))
    values = draw(st.lists(NUMBERS, min_size=int(np.prod(shape)), max_size=int(np.prod(shape))))
    nested = np.array(values, dtype=object).reshape(shape).tolist()
    if draw(st.booleans()) and len(nested) > 1 and isinstance(nested[-1], list):
        nested[-1] = nested[-1][:-1] or [nested[-1]]
    return nested


def assert_same(fast, plain) -> None:
    """`fast` (jsondoc) means what `plain` (orjson) means: arrays equal np.asarray(plain) exactly."""
    if isinstance(fast, np.ndarray):
        expected = np.asarray(plain)
        assert (fast.dtype, fast.shape) == (expected.dtype, expected.shape)
        np.testing.assert_array_equal(fast, expected)
    elif isinstance(fast, list):
        assert type(plain) is list and len(fast) == len(plain)
        for a, b in zip(fast, plain, strict=True):
            assert_same(a, b)
    elif isinstance(fast, dict):
        assert type(plain) is dict and list(fast) == list(plain)
        for key in fast:
            assert_same(fast[key], plain[key])
    else:
        assert type(fast) is type(plain) and fast == plain


@settings(max_examples=400, deadline=None)
@given(st.one_of(DOCUMENTS, regular_arrays(), st.dictionaries(st.just("instances"), regular_arrays())))
def test_every_document_means_what_orjson_makes_of_it(document):
    raw = json.dumps(document).encode()  # orjson cannot write integers beyond 64 bits
    assert_same(every_array(raw), orjson.loads(raw))


def test_a_large_regular_array_becomes_one_tensor_and_a_small_one_stays_lists():
    image = np.arange(784, dtype=np.float64).reshape(1, 28, 28, 1) / 7
    decoded = jsondoc.loads(orjson.dumps({"instances": image.tolist(), "ids": [1, 2]}))
    assert decoded["instances"].dtype == np.float64 and decoded["instances"].shape == (1, 28, 28, 1)
    np.testing.assert_array_equal(decoded["instances"], image)
    assert decoded["ids"] == [1, 2]
    integers = jsondoc.loads(orjson.dumps(list(range(200))))
    assert integers.dtype == np.int64 and integers.tolist() == list(range(200))


def test_ragged_arrays_with_a_dense_count_stay_lists():
    for ragged in ([[1, 2], [3], [4, 5, 6]], [[[1, 2]], [3, 4]], [[1], 2], [[], [1]], [[1, 2], [3, 4, [5]]]):
        decoded = every_array(orjson.dumps(ragged))
        assert type(decoded) is list  # its regular parts may be arrays: lists of arrays, as np.asarray sees them
        assert_same(decoded, ragged)


def test_what_is_not_a_number_or_does_not_fit_int64_stays_lists():
    for value in ([1, True], [1, None], ["1", 2], [2**63, 1], [[1, 2], {"a": 1}], []):
        decoded = every_array(json.dumps(value).encode())
        assert type(decoded) is list
        assert_same(decoded, value)


def test_text_that_is_not_json_gets_orjson_error_with_its_position():
    with pytest.raises(orjson.JSONDecodeError, match="line 1 column"):
        jsondoc.loads(b'{"instances": [1, 2}')
    assert jsondoc.loads(b"18446744073709551616") == orjson.loads(b"18446744073709551616")  # orjson decides


def _outcome(decode, document):
    try:
        return decode(document)
    except Exception as exc:  # the same failure either way (the doors refuse a body that is not an object first)
        return type(exc)


@settings(max_examples=300, deadline=None)
@given(st.one_of(http_fuzz.valid_tf_requests(), http_fuzz.hostile_tf_requests()))
def test_tf_serving_requests_decode_alike(case):
    _, body, _, _ = case
    fast, plain = (_outcome(_tf_door, parse(body)) for parse in _PARSERS)
    _assert_same_outcome(fast, plain)


@settings(max_examples=300, deadline=None)
@given(st.one_of(http_fuzz.valid_v2_requests(), http_fuzz.hostile_v2_requests()))
def test_v2_requests_decode_alike(case):
    _, body, headers, _ = case
    length = headers.get("Inference-Header-Content-Length", str(len(body)))
    if not length.isdigit():
        return
    header, binary = body[: int(length)], memoryview(body[int(length) :])
    try:
        documents = [parse(header) for parse in _PARSERS]
    except orjson.JSONDecodeError:
        return
    fast, plain = (_outcome(lambda d: decode_infer(d, binary, 10_000), document) for document in documents)
    _assert_same_outcome(fast, plain)


_PARSERS = (every_array, orjson.loads)


def _tf_door(document):
    """What the TF Serving door does with a parsed body (service/http/tfserving.py: an object first)."""
    if type(document) is not dict:
        raise InvalidArgument("request body: expected a JSON object")
    return decode_predict_request(document, SPEC)


def _assert_same_outcome(fast, plain) -> None:
    if isinstance(plain, type):
        assert fast is plain
        return
    assert not isinstance(fast, type), fast
    assert_same(_arrays_of(fast), _arrays_of(plain))


def _arrays_of(decoded):
    """The decoded request's arrays as plain lists, tagged with their dtype and shape."""
    inputs = decoded[0] if isinstance(decoded, tuple) else decoded.inputs
    return {name: [str(value.dtype), list(value.shape), value.tolist()] for name, value in dict(inputs).items()}
