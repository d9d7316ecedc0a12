"""Hypothesis strategies for hostile gRPC requests against the test repository (affine, strings, mlp).

Requests come in three flavours: valid ones (any finite or non-finite values, either encoding),
valid ones with one field mutated, and fully hostile ones. `valid_*` strategies yield
(message, True) so that tests can demand OK for them; the others yield (message, False).
Raw-bytes helpers append unknown or malformed fields to serialized messages.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from service.api import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    predict_pb2,
    tensor_pb2,
    tensor_shape_pb2,
    types_pb2,
)
from service.rpc.codec import to_tensor_proto
from tests.support.tensors import typed_proto

INT64 = st.integers(-(2**63), 2**63 - 1)
# Input names, dtypes and row shapes of serving_default for each test model.
SIGNATURES = {
    "affine": ("x", np.dtype(np.float32), (3,)),
    "strings": ("text", np.dtype(object), ()),
    "mlp": ("features", np.dtype(np.float32), (4,)),
}
ADVERSARIAL_NAMES = [
    "", ".", "..", "../affine", "affine/..", "affine/1", "/etc/passwd", "a\x00b", "affine\x00", "..\\affine",
    "A" * 129, "x" * 100_000, "affine ", "\uff41ffine", "%2e%2e", "-affine", "affine.", "af..fine", "\u202eenifa",
]
ADVERSARIAL_VERSIONS = [0, -1, 1, 2, 3, 9, 2**31, 2**63 - 1, -(2**63)]
ADVERSARIAL_DIMS = [0, 1, 2, 3, 4, -1, -(2**63), 2**63 - 1, 2**40, 2**31, 2**32 + 3, 2**24 + 1]
HUGE_STRING_BYTES = [0, 1, 1000, 2**20, 4 * 2**20]

model_names = st.one_of(
    st.sampled_from(sorted(SIGNATURES)), st.sampled_from(ADVERSARIAL_NAMES), st.text(max_size=40)
)
labels = st.one_of(st.sampled_from(["stable", "", "gold", "1"]), st.text(max_size=20), st.just("L" * 50_000))
signatures = st.one_of(st.sampled_from(["", "serving_default", "total_only", "nope"]), st.text(max_size=20))
variants = st.one_of(st.none(), st.sampled_from(["savedmodel", "float32", "int8", "", "x" * 4000]), st.text(max_size=8))


def model_spec(name: str, version: int | None = None, label: str | None = None, signature: str = ""):
    spec = model_pb2.ModelSpec(name=name, signature_name=signature)
    if version is not None:
        spec.version.value = version
    elif label is not None:
        spec.version_label = label
    return spec


@st.composite
def hostile_model_specs(draw) -> model_pb2.ModelSpec:
    choice = draw(st.sampled_from(["version", "label", "none"]))
    version = draw(st.one_of(st.sampled_from(ADVERSARIAL_VERSIONS), INT64)) if choice == "version" else None
    label = draw(labels) if choice == "label" else None
    return model_spec(draw(model_names), version, label, draw(signatures))


def row_values(dtype: np.dtype, row_shape: tuple[int, ...], rows: int):
    """Arrays for a signature input: every float (NaN, Inf, subnormals) or arbitrary bytes."""
    shape = (rows, *row_shape)
    if dtype.kind == "O":
        return hnp.arrays(dtype, shape, elements=st.binary(max_size=16))
    return hnp.arrays(dtype, shape, elements=st.floats(width=32))


@st.composite
def valid_tensors(draw, model: str) -> tensor_pb2.TensorProto:
    _, dtype, row_shape = SIGNATURES[model]
    array = draw(row_values(dtype, row_shape, draw(st.integers(1, 8))))
    return typed_proto(array) if draw(st.booleans()) else to_tensor_proto(array)


@st.composite
def valid_predicts(draw):
    """(PredictRequest, True): well-formed for the model; only version and signature vary within what exists."""
    model = draw(st.sampled_from(sorted(SIGNATURES)))
    version = draw(st.sampled_from([None, 1, 2])) if model == "affine" else None
    signature = draw(st.sampled_from(["", "total_only"])) if model == "affine" else ""
    request = predict_pb2.PredictRequest(model_spec=model_spec(model, version, signature=signature))
    name = SIGNATURES[model][0]
    request.inputs[name].CopyFrom(draw(valid_tensors(model)))
    return request, True


@st.composite
def mutated_tensors(draw, model: str) -> tensor_pb2.TensorProto:
    """A valid tensor with one thing wrong: dtype, declared shape, content length or a stray field."""
    proto = draw(valid_tensors(model))
    mutation = draw(st.sampled_from(["dtype", "dims", "extra_dim", "content", "stray", "huge_string", "rank"]))
    if mutation == "dtype":
        proto.dtype = draw(st.one_of(st.sampled_from(list(types_pb2.DataType.values())), st.integers(-5, 300)))
    elif mutation == "dims" and proto.tensor_shape.dim:
        axis = draw(st.integers(0, len(proto.tensor_shape.dim) - 1))
        proto.tensor_shape.dim[axis].size = draw(st.one_of(st.sampled_from(ADVERSARIAL_DIMS), INT64))
    elif mutation == "extra_dim":
        proto.tensor_shape.dim.add(size=draw(st.sampled_from(ADVERSARIAL_DIMS)))
    elif mutation == "rank":
        del proto.tensor_shape.dim[:]
        proto.tensor_shape.unknown_rank = draw(st.booleans())
    elif mutation == "content":
        proto.tensor_content = draw(st.binary(max_size=64))
    elif mutation == "stray":
        proto.double_val.extend(draw(st.lists(st.floats(), min_size=1, max_size=4)))
    else:
        proto.string_val.append(b"x" * draw(st.sampled_from(HUGE_STRING_BYTES)))
    return proto


@st.composite
def hostile_tensors(draw) -> tensor_pb2.TensorProto:
    """Anything: any dtype number, any dims (huge, negative, many), any content in any field."""
    proto = tensor_pb2.TensorProto(dtype=draw(st.one_of(st.sampled_from(list(types_pb2.DataType.values())),
                                                        st.integers(-(2**31), 2**31 - 1))))
    dims = draw(st.lists(st.one_of(st.sampled_from(ADVERSARIAL_DIMS), INT64), max_size=40))
    proto.tensor_shape.dim.extend(tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in dims)
    proto.tensor_shape.unknown_rank = draw(st.booleans())
    fill = draw(st.sampled_from(["content", "float", "string", "huge_string", "int", "none"]))
    if fill == "content":
        proto.tensor_content = draw(st.binary(max_size=256))
    elif fill == "float":
        proto.float_val.extend(draw(st.lists(st.floats(width=32), max_size=16)))
    elif fill == "string":
        proto.string_val.extend(draw(st.lists(st.binary(max_size=32), max_size=8)))
    elif fill == "huge_string":
        proto.string_val.append(b"\xff" * draw(st.sampled_from(HUGE_STRING_BYTES)))
    elif fill == "int":
        proto.int64_val.extend(draw(st.lists(INT64, max_size=16)))
    return proto


@st.composite
def hostile_predicts(draw):
    """(PredictRequest, False): a mutated or hostile tensor, a hostile model spec, or odd input names."""
    model = draw(st.sampled_from(sorted(SIGNATURES)))
    spec = draw(hostile_model_specs()) if draw(st.booleans()) else model_spec(model)
    request = predict_pb2.PredictRequest(model_spec=spec)
    names = st.one_of(st.just(SIGNATURES[model][0]), st.text(max_size=12), st.just("n" * 100_000))
    tensors = st.one_of(mutated_tensors(model), hostile_tensors(), valid_tensors(model))
    for name, tensor in draw(st.dictionaries(names, tensors, max_size=3)).items():
        request.inputs[name].CopyFrom(tensor)
    request.output_filter.extend(draw(st.lists(st.one_of(st.sampled_from(["y", "total", "length"]),
                                                         st.text(max_size=8)), max_size=3)))
    return request, False


@st.composite
def metadata_requests(draw):
    """(GetModelMetadataRequest, valid?)."""
    fields = draw(st.one_of(st.just(["signature_def"]), st.lists(st.text(max_size=12), max_size=3),
                            st.just(["signature_def", "signature_def"]), st.just(["f" * 50_000])))
    if draw(st.booleans()):
        spec, valid = model_spec(draw(st.sampled_from(sorted(SIGNATURES)))), fields == ["signature_def"]
    else:
        spec, valid = draw(hostile_model_specs()), False
    return get_model_metadata_pb2.GetModelMetadataRequest(model_spec=spec, metadata_field=fields), valid


@st.composite
def status_requests(draw):
    """(GetModelStatusRequest, valid?)."""
    if draw(st.booleans()):
        model = draw(st.sampled_from(sorted(SIGNATURES)))
        version = draw(st.sampled_from([None, 1])) if model != "affine" else draw(st.sampled_from([None, 1, 2]))
        return get_model_status_pb2.GetModelStatusRequest(model_spec=model_spec(model, version)), True
    return get_model_status_pb2.GetModelStatusRequest(model_spec=draw(hostile_model_specs())), False


# ---- raw bytes ---------------------------------------------------------------------------------


def varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


@st.composite
def unknown_fields(draw) -> bytes:
    """One well-formed field with a number the message does not define (a proto3 parser keeps it)."""
    number = draw(st.integers(100, 2**29 - 1).filter(lambda n: not 19000 <= n <= 19999))
    wire_type = draw(st.sampled_from([0, 1, 2, 5]))
    if wire_type == 0:
        payload = varint(draw(st.integers(0, 2**64 - 1)))
    elif wire_type == 1:
        payload = draw(st.binary(min_size=8, max_size=8))
    elif wire_type == 5:
        payload = draw(st.binary(min_size=4, max_size=4))
    else:
        data = draw(st.binary(max_size=64))
        payload = varint(len(data)) + data
    return varint(number << 3 | wire_type) + payload


@st.composite
def corrupt_bytes(draw, valid: bytes) -> bytes:
    """Bytes that most likely do not parse: truncated, bit-flipped, a lying length, a bad wire type, noise."""
    how = draw(st.sampled_from(["truncate", "flip", "lying_length", "bad_wire_type", "noise", "bad_utf8"]))
    if how == "truncate" and valid:
        return valid[: draw(st.integers(0, len(valid) - 1))]
    if how == "flip" and valid:
        data = bytearray(valid)
        data[draw(st.integers(0, len(data) - 1))] ^= 1 << draw(st.integers(0, 7))
        return bytes(data)
    if how == "lying_length":
        return valid + varint(1 << 3 | 2) + varint(draw(st.integers(1, 2**32)))
    if how == "bad_wire_type":
        return valid + varint(draw(st.integers(1, 1000)) << 3 | draw(st.sampled_from([6, 7])))
    if how == "bad_utf8":
        return valid + varint(1 << 3 | 2) + varint(3) + varint(1 << 3 | 2) + varint(1) + b"\xff"  # model_spec.name
    return draw(st.binary(max_size=256))
