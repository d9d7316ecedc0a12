"""Hypothesis strategies for the REST doors' request bodies: valid, mutated, hostile and corrupt.

Each strategy returns (path, body bytes, headers, valid): `valid` requests must get 200; every
other one a client error. Models are the session repository's affine (x[None,3] float32) and
strings (text[None] string).
"""

from __future__ import annotations

import base64
import json
import struct

from hypothesis import strategies as st

TF_PATHS = [
    "/v1/models/affine:predict",
    "/v1/models/affine/versions/1:predict",
    "/v1/models/strings:predict",
    "/v1/models/affine/labels/stable:predict",
    "/v1/models/nope:predict",
    "/v1/models/affine/versions/0:predict",
]
V2_PATHS = [
    "/v2/models/affine/infer",
    "/v2/models/affine/versions/2/infer",
    "/v2/models/strings/infer",
    "/v2/models/nope/infer",
    "/v2/models/affine/versions/x/infer",
]
DATATYPES = ["FP32", "FP64", "FP16", "INT8", "INT32", "INT64", "UINT8", "UINT64", "BOOL", "BYTES", "BF16", "fp32", ""]

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
    st.just({"b64": "YWJj"}),
    st.just({"b64": "**"}),
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=24,
)
ROWS = st.lists(st.lists(st.floats(-1e3, 1e3, width=32), min_size=3, max_size=3), min_size=1, max_size=4)


def _encode(document) -> bytes:
    return json.dumps(document).encode()


@st.composite
def valid_tf_requests(draw):
    rows = draw(ROWS)
    shape = draw(st.sampled_from(["instances", "named_instances", "inputs", "named_inputs"]))
    document = {
        "instances": {"instances": rows},
        "named_instances": {"instances": [{"x": row} for row in rows]},
        "inputs": {"inputs": rows},
        "named_inputs": {"inputs": {"x": rows}},
    }[shape]
    if draw(st.booleans()):
        document["signature_name"] = draw(st.sampled_from(["", "serving_default", "total_only"]))
    return "/v1/models/affine:predict", _encode(document), {}, True


@st.composite
def hostile_tf_requests(draw):
    path = draw(st.sampled_from(TF_PATHS))
    key = draw(st.sampled_from(["instances", "inputs", "signature_name", "other"]))
    document = draw(st.one_of(JSON_VALUES, st.dictionaries(st.just(key), JSON_VALUES, min_size=1)))
    return path, _encode(document), {}, False


@st.composite
def valid_v2_requests(draw):
    rows = draw(ROWS)
    flat = [v for row in rows for v in row]
    binary = draw(st.booleans())
    tensor = {"name": "x", "shape": [len(rows), 3], "datatype": "FP32"}
    outputs = draw(
        st.sampled_from([None, [], [{"name": "y"}], [{"name": "total", "parameters": {"binary_data": True}}]])
    )
    header = {"inputs": [tensor], "id": draw(st.text(max_size=5))}
    if outputs is not None:
        header["outputs"] = outputs
    if not binary:
        tensor["data"] = flat
        return "/v2/models/affine/infer", _encode(header), {}, True
    tensor["parameters"] = {"binary_data_size": 4 * len(flat)}
    raw = _encode(header)
    data = struct.pack(f"<{len(flat)}f", *flat)
    return "/v2/models/affine/infer", raw + data, {"Inference-Header-Content-Length": str(len(raw))}, True


@st.composite
def hostile_v2_requests(draw):
    path = draw(st.sampled_from(V2_PATHS))
    tensor = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "name": st.one_of(st.sampled_from(["x", "text", "y"]), JSON_VALUES),
                "shape": st.one_of(st.lists(st.integers(-2, 2**40), max_size=4), JSON_VALUES),
                "datatype": st.one_of(st.sampled_from(DATATYPES), JSON_VALUES),
                "data": JSON_VALUES,
                "parameters": st.one_of(
                    st.fixed_dictionaries({"binary_data_size": st.integers(-5, 2**33)}), JSON_VALUES
                ),
            },
        )
    )
    header = draw(
        st.fixed_dictionaries(
            {"inputs": st.one_of(st.just([tensor]), JSON_VALUES)},
            optional={
                "outputs": JSON_VALUES,
                "parameters": JSON_VALUES,
                "id": JSON_VALUES,
            },
        )
    )
    raw = _encode(header)
    tail = draw(st.binary(max_size=64))
    headers = {}
    if tail or draw(st.booleans()):
        length = draw(st.one_of(st.just(str(len(raw))), st.sampled_from(["-1", "x", "99999999", "0"])))
        headers["Inference-Header-Content-Length"] = length
    return path, raw + tail, headers, False


@st.composite
def corrupt_bodies(draw):
    """A valid body of either door, truncated, with bytes flipped or garbage appended."""
    path, body, headers, _ = draw(st.one_of(valid_tf_requests(), valid_v2_requests()))
    cut = draw(st.integers(0, len(body)))
    mode = draw(st.sampled_from(["truncate", "flip", "append"]))
    if mode == "truncate":
        body = body[:cut]
    elif mode == "flip" and body:
        index = min(cut, len(body) - 1)
        body = body[:index] + bytes([body[index] ^ draw(st.integers(1, 255))]) + body[index + 1 :]
    else:
        body += draw(st.binary(min_size=1, max_size=16))
    return path, body, headers, False


def b64(data: bytes) -> dict:
    return {"b64": base64.b64encode(data).decode()}
