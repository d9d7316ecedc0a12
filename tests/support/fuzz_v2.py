"""Hypothesis strategies for hostile v2 (Open Inference Protocol) ModelInfer requests against the test repository.

As in tests/support/fuzz.py: `valid_infers` yields (request, True) for requests built to succeed
(any float values, raw or typed contents, any subset of outputs); `mutated_infers` a valid request
with one thing wrong and `hostile_infers` anything at all, both as (request, False). Plus hostile
ModelMetadata and ModelReady requests.
"""

from __future__ import annotations

from hypothesis import strategies as st

from service.api import grpc_service_pb2 as pb
from tests.support.fuzz import ADVERSARIAL_DIMS, ADVERSARIAL_NAMES, INT64, SIGNATURES, model_names, row_values
from tests.support.v2 import FIELD, infer_request

OUTPUTS = {"affine": ["y", "total"], "strings": ["length", "upper"], "mlp": ["probabilities"]}
DATATYPES = [
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
    "BYTES",
]
CONTENT_FIELDS = sorted(set(FIELD.values()))
versions = st.one_of(
    st.sampled_from(["", "1", "2", "9", "0", "-1", "01", "1.0", " 1", "v1", "9" * 30, "\u0661"]),
    st.integers(-(2**70), 2**70).map(str),
    st.text(max_size=12),
)
datatypes = st.one_of(st.sampled_from(DATATYPES), st.sampled_from(["BF16", "fp32", "", "STRING"]), st.text(max_size=8))
dims = st.lists(st.one_of(st.sampled_from(ADVERSARIAL_DIMS), INT64), max_size=40)


@st.composite
def valid_infers(draw):
    """(ModelInferRequest, True): well-formed for the model; only version, outputs, id and encoding vary."""
    model = draw(st.sampled_from(sorted(SIGNATURES)))
    name, dtype, row_shape = SIGNATURES[model]
    array = draw(row_values(dtype, row_shape, draw(st.integers(1, 8))))
    outputs = draw(st.lists(st.sampled_from(OUTPUTS[model]), unique=True))
    version = draw(st.sampled_from(["", "1", "2"])) if model == "affine" else draw(st.sampled_from(["", "1"]))
    request = infer_request(
        model,
        {name: array},
        raw=draw(st.booleans()),
        outputs=tuple(outputs),
        version=version,
        request_id=draw(st.text(max_size=40)),
    )
    return request, True


@st.composite
def mutated_infers(draw):
    """(ModelInferRequest, False): a valid request with its datatype, shape, contents or raw entries broken."""
    request, _ = draw(valid_infers())
    tensor = request.inputs[0]
    mutation = draw(
        st.sampled_from(
            ["datatype", "dim", "extra_dim", "raw", "raw_count", "stray", "both", "duplicate", "output", "shape"]
        )
    )
    if mutation == "datatype":
        tensor.datatype = draw(datatypes.filter(lambda d: d != tensor.datatype))
    elif mutation == "dim" and tensor.shape:
        tensor.shape[draw(st.integers(0, len(tensor.shape) - 1))] = draw(st.sampled_from(ADVERSARIAL_DIMS))
    elif mutation == "extra_dim":
        tensor.shape.append(draw(st.sampled_from(ADVERSARIAL_DIMS)))
    elif mutation == "raw":
        request.ClearField("raw_input_contents")
        request.raw_input_contents.append(draw(st.binary(max_size=64)))
        tensor.ClearField("contents")
    elif mutation == "raw_count":
        request.raw_input_contents.extend(draw(st.lists(st.binary(max_size=8), min_size=1, max_size=3)))
    elif mutation == "stray":
        field = draw(st.sampled_from(CONTENT_FIELDS))
        getattr(tensor.contents, field).extend(draw(st.lists(_element(field), min_size=1, max_size=4)))
    elif mutation == "both" and request.raw_input_contents:
        tensor.contents.bytes_contents.append(b"x")
    elif mutation == "duplicate":
        request.inputs.append(tensor)
        if request.raw_input_contents:
            request.raw_input_contents.append(request.raw_input_contents[0])
    elif mutation == "output":
        request.outputs.add(name=draw(st.text(max_size=12)))
    else:
        del tensor.shape[:]
    return request, False


@st.composite
def hostile_infers(draw):
    """(ModelInferRequest, False): anything: names, versions, datatypes, dims, contents, raw entries, parameters."""
    request = pb.ModelInferRequest(
        model_name=draw(model_names),
        model_version=draw(versions),
        id=draw(st.one_of(st.text(max_size=20), st.just("i" * 100_000))),
    )
    names = st.one_of(st.sampled_from(["x", "text", "features"]), st.text(max_size=12), st.just("n" * 100_000))
    for _ in range(draw(st.integers(0, 3))):
        tensor = request.inputs.add(name=draw(names), datatype=draw(datatypes), shape=draw(dims))
        if draw(st.booleans()):
            field = draw(st.sampled_from(CONTENT_FIELDS))
            values = draw(st.lists(_element(field), max_size=16))
            getattr(tensor.contents, field).extend(values)
    if draw(st.booleans()):
        request.raw_input_contents.extend(draw(st.lists(st.binary(max_size=256), max_size=4)))
    for output in draw(st.lists(st.one_of(st.sampled_from(["y", "total", "upper"]), st.text(max_size=8)), max_size=3)):
        request.outputs.add(name=output)
    if draw(st.booleans()):
        parameter = request.parameters["signature_name"]
        choice = draw(st.sampled_from(["string", "int", "bool"]))
        if choice == "string":
            parameter.string_param = draw(st.one_of(st.sampled_from(["", "total_only", "nope"]), st.text()))
        elif choice == "int":
            parameter.int64_param = draw(INT64)
        else:
            parameter.bool_param = True
    return request, False


def _element(field: str):
    return {
        "bool_contents": st.booleans(),
        "int_contents": st.integers(-(2**31), 2**31 - 1),
        "int64_contents": INT64,
        "uint_contents": st.integers(0, 2**32 - 1),
        "uint64_contents": st.integers(0, 2**64 - 1),
        "fp32_contents": st.floats(width=32),
        "fp64_contents": st.floats(),
        "bytes_contents": st.binary(max_size=32),
    }[field]


@st.composite
def metadata_and_ready_requests(draw):
    """(method name, request, valid?) for ModelMetadata and ModelReady, with hostile names and versions."""
    method = draw(st.sampled_from(["ModelMetadata", "ModelReady"]))
    message = pb.ModelMetadataRequest if method == "ModelMetadata" else pb.ModelReadyRequest
    if draw(st.booleans()):
        model = draw(st.sampled_from(sorted(SIGNATURES)))
        return method, message(name=model, version=draw(st.sampled_from(["", "1"]))), True
    name = draw(st.one_of(model_names, st.sampled_from(ADVERSARIAL_NAMES)))
    return method, message(name=name, version=draw(versions)), False
