"""The v2 gRPC codec alone: raw and typed inputs, BYTES layout, range checks, refusals before allocation, outputs."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from service.api import grpc_service_pb2 as pb
from service.errors import InvalidArgument, ResourceExhausted
from service.rpc.v2.codec import decode_inputs, fill_outputs
from tests.support.v2 import infer_request, outputs_of

LIMIT = 1 << 20


def decode(request: pb.ModelInferRequest, max_elements: int = LIMIT) -> dict[str, np.ndarray]:
    return decode_inputs(request, max_elements=max_elements)


def one_raw(datatype: str, shape: list[int], raw: bytes) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="m")
    request.inputs.add(name="t", datatype=datatype, shape=shape)
    request.raw_input_contents.append(raw)
    return request


def one_typed(datatype: str, shape: list[int], field: str, values: list) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="m")
    getattr(request.inputs.add(name="t", datatype=datatype, shape=shape).contents, field).extend(values)
    return request


@pytest.mark.parametrize("raw", [True, False], ids=["raw", "typed"])
@pytest.mark.parametrize(
    "array",
    [
        np.array([[True, False]]),
        np.array([[0, 255]], np.uint8),
        np.array([[-(2**63), 2**63 - 1]], np.int64),
        np.array([[0, 2**64 - 1]], np.uint64),
        np.array([[-32768, 32767]], np.int16),
        np.array([[1.5, -np.inf]]),
        np.array([[np.nan, 3.25]], np.float32),
        np.array([b"", b"\x00a"], dtype=object),
    ],
    ids=lambda a: str(a.dtype),
)
def test_inputs_decode_to_the_array_sent(array, raw):
    (decoded,) = decode(infer_request("m", {"t": array}, raw=raw)).values()
    assert decoded.dtype == array.dtype and decoded.shape == array.shape
    np.testing.assert_array_equal(decoded, array)


def test_fp16_decodes_raw():
    array = np.array([[0.5, -65504.0]], np.float16)
    np.testing.assert_array_equal(decode(infer_request("m", {"t": array}))["t"], array)


def test_raw_bytes_layout_is_length_prefixed():
    raw = struct.pack("<I", 3) + b"abc" + struct.pack("<I", 0)
    assert decode(one_raw("BYTES", [2], raw))["t"].tolist() == [b"abc", b""]


@pytest.mark.parametrize(
    ("raw", "shape", "message"),
    [
        (struct.pack("<I", 3) + b"ab", [1], "raw BYTES element 0 declares 3 bytes but only 2 remain"),
        (struct.pack("<I", 1) + b"a" + b"\x00\x00", [1], "2 bytes after its 1 elements"),
        (struct.pack("<I", 1) + b"a" + b"\x00" * 3, [2], "ends after 1 of 2 elements"),
        (b"\x00" * 8, [1 << 19], "too few for shape [524288]"),  # refused before allocating 2**19 slots
    ],
)
def test_malformed_raw_bytes_are_refused(raw, shape, message):
    with pytest.raises(InvalidArgument) as info:
        decode(one_raw("BYTES", shape, raw))
    assert message in info.value.message


@pytest.mark.parametrize(
    ("datatype", "field", "value", "bounds"),
    [
        ("INT8", "int_contents", -129, "[-128, 127]"),
        ("INT16", "int_contents", 32768, "[-32768, 32767]"),
        ("UINT8", "uint_contents", 256, "[0, 255]"),
        ("UINT16", "uint_contents", 65536, "[0, 65535]"),
    ],
)
def test_typed_values_that_do_not_fit_are_refused(datatype, field, value, bounds):
    with pytest.raises(InvalidArgument, match=rf"contents.{field} value {value} is out of range \{bounds}"):
        decode(one_typed(datatype, [2], field, [0, value]))


@pytest.mark.parametrize(
    ("request_of", "message"),
    [
        (lambda: one_raw("BOOL", [2], b"\x01\x02"), "raw BOOL content holds bytes other than 0 and 1"),
        (lambda: one_raw("FP32", [2], b"\x00" * 7), "raw content has 7 bytes but shape [2] of FP32 needs 2 x 4 = 8"),
        (lambda: one_typed("FP32", [2], "fp64_contents", [1.0, 2.0]), "FP32 carries its values in contents.fp32"),
        (lambda: one_typed("FP16", [1], "fp32_contents", [1.0]), "FP16 has no typed contents field"),
        (lambda: one_typed("FP32", [3], "fp32_contents", [1.0]), "has 1 values but shape [3] needs 3"),
        (lambda: one_typed("INT32", [40 * [1]][0], "int_contents", [1]), "has rank 40; expected at most 32"),
        (lambda: one_typed("BF16", [1], "fp32_contents", [1.0]), "datatype 'BF16' is not supported"),
    ],
    ids=["bool", "raw-size", "stray", "fp16-typed", "count", "rank", "bf16"],
)
def test_malformed_tensors_name_the_input(request_of, message):
    with pytest.raises(InvalidArgument, match="input 't': ") as info:
        decode(request_of())
    assert message in info.value.message


def test_fp16_without_values_is_fine_typed():
    assert decode(one_typed("FP16", [0, 2], "fp32_contents", []))["t"].shape == (0, 2)


def test_shapes_over_the_element_limit_are_refused_before_reading_values():
    with pytest.raises(ResourceExhausted, match="dimension 1 = 1099511627776 is over the limit of 64"):
        decode(one_raw("FP32", [0, 2**40], b""), max_elements=64)
    with pytest.raises(ResourceExhausted, match=r"shape \[16, 16\] has 256 elements, over the limit of 64"):
        decode(one_typed("FP32", [16, 16], "fp32_contents", []), max_elements=64)


@pytest.mark.parametrize("raw", [True, False])
def test_outputs_are_written_in_the_encoding_asked_for(raw):
    outputs = {
        "p": np.array([[0.25, 0.75]], np.float32),
        "s": np.array(["é", b"\x00"], dtype=object),
        "n": np.array([3, -4], np.int8),
    }
    response = pb.ModelInferResponse()
    fill_outputs(response, outputs, raw=raw)
    assert len(response.raw_output_contents) == (3 if raw else 0)
    assert [(t.name, t.datatype, list(t.shape)) for t in response.outputs] == [
        ("p", "FP32", [1, 2]),
        ("s", "BYTES", [2]),
        ("n", "INT8", [2]),
    ]
    decoded = outputs_of(response)
    np.testing.assert_array_equal(decoded["p"], outputs["p"])
    assert decoded["s"].tolist() == ["é".encode(), b"\x00"]
    assert decoded["n"].tolist() == [3, -4]


def test_an_fp16_output_makes_the_whole_response_raw():
    response = pb.ModelInferResponse()
    fill_outputs(response, {"a": np.ones(2, np.float32), "h": np.ones(2, np.float16)}, raw=False)
    assert len(response.raw_output_contents) == 2
    assert not any(t.HasField("contents") for t in response.outputs)


def test_string_outputs_holding_other_objects_are_refused():
    with pytest.raises(InvalidArgument, match="string tensor element 1 is a int; expected bytes or str"):
        fill_outputs(pb.ModelInferResponse(), {"s": np.array([b"a", 5], dtype=object)}, raw=True)
