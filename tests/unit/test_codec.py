"""service.rpc.codec: round trips for every dtype and encoding, the fill rule, and refusals."""

from __future__ import annotations

import os
import pickle
import re
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from service.api import tensor_pb2, tensor_shape_pb2, types_pb2
from service.errors import InvalidArgument, ResourceExhausted
from service.rpc import codec
from tests.support.tensors import DTYPES, VALUE_FIELDS, assert_same, sample_array, typed_proto

DT = types_pb2.DataType
MAX_ELEMENTS = 1 << 20
SHAPES = [(), (1,), (2, 3), (0, 4), (2, 0, 3)]


def decode(proto: tensor_pb2.TensorProto, max_elements: int = MAX_ELEMENTS) -> np.ndarray:
    return codec.to_ndarray(proto, "x", max_elements=max_elements)


def make_proto(dtype: int, shape: tuple[int, ...], **fields) -> tensor_pb2.TensorProto:
    proto = tensor_pb2.TensorProto(dtype=dtype, **fields)
    for size in shape:
        proto.tensor_shape.dim.add(size=size)
    return proto


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_round_trip_through_our_encoding(dtype, shape):
    array = sample_array(dtype, shape)
    proto = codec.to_tensor_proto(array)
    assert proto.dtype == codec.datatype_of(dtype)
    if proto.dtype == DT.DT_STRING:
        assert len(proto.string_val) == array.size and not proto.tensor_content
    else:
        assert len(proto.tensor_content) == array.nbytes
        assert not any(len(getattr(proto, field)) for field in VALUE_FIELDS)
    assert_same(decode(tensor_pb2.TensorProto.FromString(proto.SerializeToString())), array)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_typed_value_fields_decode(dtype, shape):
    array = sample_array(dtype, shape)
    assert_same(decode(typed_proto(array)), array)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_one_typed_value_fills_the_shape(dtype):
    one = sample_array(dtype, (1,))
    proto = typed_proto(one)
    proto.tensor_shape.dim[0].size = 3
    proto.tensor_shape.dim.add(size=2)
    assert_same(decode(proto), np.full((3, 2), one[0], dtype=one.dtype))


def test_short_or_empty_typed_field_is_refused_instead_of_padded():
    with pytest.raises(InvalidArgument, match=r"input 'x': float_val has 2 values but shape \[2, 2\] needs 4"):
        decode(make_proto(DT.DT_FLOAT, (2, 2), float_val=[1.0, 2.0]))
    with pytest.raises(InvalidArgument, match=r"float_val has 0 values but shape \[3\] needs 3"):
        decode(make_proto(DT.DT_FLOAT, (3,)))
    with pytest.raises(InvalidArgument, match="has 5 values"):
        decode(make_proto(DT.DT_STRING, (4,), string_val=[b"a"] * 5))


def test_strings_accept_bytes_str_and_fixed_width_arrays():
    expected = np.array([b"a", "\u00e9".encode(), b""], dtype=object)
    for array in (np.array(["a", "\u00e9", ""]), np.array([b"a", "\u00e9", b""], dtype=object)):
        assert_same(decode(codec.to_tensor_proto(array)), expected)
    assert_same(decode(codec.to_tensor_proto(np.array([b"ab", b"c"]))), np.array([b"ab", b"c"], dtype=object))
    with pytest.raises(InvalidArgument, match="element 1 is a int"):
        codec.to_tensor_proto(np.array([b"a", 3], dtype=object))


def test_big_endian_and_strided_arrays_are_encoded_little_endian_row_major():
    array = np.arange(12, dtype=">i4").reshape(3, 4).T
    proto = codec.to_tensor_proto(array)
    assert proto.tensor_content == np.ascontiguousarray(array, dtype="<i4").tobytes()
    assert_same(decode(proto), array.astype(np.int32))


def test_dtype_mapping_both_ways():
    for dtype in DTYPES:
        dt = codec.datatype_of(dtype)
        assert codec.numpy_dtype(dt) == (np.dtype(object) if dt == DT.DT_STRING else np.dtype(dtype))
    assert codec.datatype_of(np.dtype(">f8")) == DT.DT_DOUBLE
    assert codec.datatype_of("U5") == codec.datatype_of("S2") == DT.DT_STRING
    for unsupported in (np.complex64, np.complex128, "M8[s]", "m8[ms]", [("a", "i4")], "V4"):
        with pytest.raises(InvalidArgument, match="not supported"):
            codec.datatype_of(unsupported)
    for dt in (DT.DT_INVALID, DT.DT_COMPLEX64, DT.DT_BFLOAT16, DT.DT_RESOURCE, DT.DT_VARIANT, DT.DT_QINT8, 999):
        with pytest.raises(InvalidArgument, match=re.escape(f"dtype {codec.dtype_name(dt)} is not supported")):
            codec.numpy_dtype(dt)


HOSTILE = {
    "invalid dtype": (make_proto(DT.DT_INVALID, (1,)), InvalidArgument, "dtype DT_INVALID is not supported"),
    "bfloat16": (make_proto(DT.DT_BFLOAT16, (1,), half_val=[1]), InvalidArgument, "DT_BFLOAT16 is not supported"),
    "complex": (make_proto(DT.DT_COMPLEX64, (1,), scomplex_val=[1, 2]), InvalidArgument, "DT_COMPLEX64"),
    "unknown enum": (make_proto(77, (1,)), InvalidArgument, r"DataType 77 \(unknown\)"),
    "negative dim": (make_proto(DT.DT_FLOAT, (2, -1)), InvalidArgument, r"dimension 1 = -1; expected sizes >= 0"),
    "unknown rank": (
        tensor_pb2.TensorProto(dtype=DT.DT_FLOAT, tensor_shape={"unknown_rank": True}),
        InvalidArgument, "unknown_rank",
    ),
    "rank 33": (make_proto(DT.DT_FLOAT, (1,) * 33, float_val=[1]), InvalidArgument, "rank 33; expected at most 32"),
    "huge dims": (
        make_proto(DT.DT_FLOAT, (2**31, 2**31), tensor_content=b"\0" * 4), ResourceExhausted, "dimension 0 = 2147483648"
    ),
    "product overflows int64": (
        make_proto(DT.DT_INT8, (1 << 20,) * 4, int_val=[1]), ResourceExhausted, "1208925819614629174706176 elements"
    ),
    "huge dim, zero elements": (make_proto(DT.DT_FLOAT, (0, 2**62)), ResourceExhausted, "dimension 1"),
    "short content": (
        make_proto(DT.DT_FLOAT, (2, 3), tensor_content=b"\0" * 20), InvalidArgument,
        r"tensor_content has 20 bytes but shape \[2, 3\] of DT_FLOAT needs 6 x 4 = 24 bytes",
    ),
    "long content": (make_proto(DT.DT_INT8, (), tensor_content=b"ab"), InvalidArgument, "needs 1 x 1 = 1 bytes"),
    "content and field": (
        make_proto(DT.DT_FLOAT, (1,), tensor_content=b"\0" * 4, float_val=[1]), InvalidArgument,
        "both tensor_content and float_val",
    ),
    "wrong field": (make_proto(DT.DT_INT64, (1,), int_val=[1]), InvalidArgument, "int64_val, but got int_val"),
    "string content": (make_proto(DT.DT_STRING, (1,), tensor_content=b"a"), InvalidArgument, "string_val"),
    "int8 range": (make_proto(DT.DT_INT8, (2,), int_val=[1, -129]), InvalidArgument, r"-129 is out of range"),
    "uint8 range": (make_proto(DT.DT_UINT8, (1,), int_val=[256]), InvalidArgument, r"\[0, 255\] for DT_UINT8"),
    "half bits": (make_proto(DT.DT_HALF, (1,), half_val=[70000]), InvalidArgument, "half_val value 70000"),
    "bool bytes": (make_proto(DT.DT_BOOL, (2,), tensor_content=b"\x01\x02"), InvalidArgument, "other than 0 and 1"),
    "value for no element": (make_proto(DT.DT_FLOAT, (0,), float_val=[1, 2]), InvalidArgument, "needs 0"),
}


@pytest.mark.parametrize("case", HOSTILE)
def test_malformed_tensors_are_refused_with_a_named_input(case):
    proto, error, message = HOSTILE[case]
    with pytest.raises(error, match=message) as caught:
        decode(tensor_pb2.TensorProto.FromString(proto.SerializeToString()))
    assert caught.value.message.startswith("input 'x': ")


def test_long_input_names_are_shortened_in_messages():
    with pytest.raises(InvalidArgument) as caught:
        codec.to_ndarray(make_proto(DT.DT_INVALID, ()), "n" * 100_000, max_elements=1)
    assert caught.value.message.startswith(f"input '{'n' * codec.MAX_NAME_CHARS}...': dtype DT_INVALID")


def test_element_limit_is_inclusive():
    assert decode(make_proto(DT.DT_FLOAT, (2, 5), float_val=[1]), max_elements=10).shape == (2, 5)
    with pytest.raises(ResourceExhausted, match=r"shape \[3, 4\] has 12 elements, over the limit of 10"):
        decode(make_proto(DT.DT_FLOAT, (3, 4), float_val=[1]), max_elements=10)


def test_decoding_tensor_content_is_a_view_of_the_message_bytes():
    array = decode(codec.to_tensor_proto(np.arange(6, dtype=np.float32)))
    assert isinstance(array.base, bytes | memoryview) or not array.flags.owndata
    assert not array.flags.writeable


# --- TensorFlow as the reference (in a subprocess: TF registers the same proto names) ---------------

ORACLE = Path(__file__).resolve().parents[1] / "support" / "tf_tensor_oracle.py"
TF_CASES = {f"{dtype.name}{list(shape)}": sample_array(dtype, shape, seed=1) for dtype in DTYPES for shape in SHAPES}
TF_FILLS = {dtype.name: sample_array(dtype, (1,), seed=2)[0] for dtype in DTYPES}
FILL_SHAPE = (2, 3)


@pytest.fixture(scope="module")
def tensorflow_says() -> dict:
    """Ask TensorFlow to decode our encodings and to encode the same arrays and fills itself."""
    protos = {}
    for case, array in TF_CASES.items():
        protos[f"{case}/content"] = codec.to_tensor_proto(array).SerializeToString()
        protos[f"{case}/typed"] = typed_proto(array).SerializeToString()
    fills = {name: (value, name, FILL_SHAPE) for name, value in TF_FILLS.items()}
    request = pickle.dumps({"protos": protos, "fills": fills})
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(
        [sys.executable, str(ORACLE)], input=request, capture_output=True, env=env, timeout=280, check=False
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    return pickle.loads(done.stdout)  # our own subprocess's output: trusted


@pytest.mark.parametrize("encoding", ["content", "typed"])
@pytest.mark.parametrize("case", TF_CASES)
def test_tensorflow_decodes_our_encodings_to_the_same_array(tensorflow_says, case, encoding):
    assert_same(tensorflow_says["decoded"][f"{case}/{encoding}"], TF_CASES[case])


@pytest.mark.parametrize("case", TF_CASES)
def test_we_decode_tensorflows_encoding_to_the_same_array(tensorflow_says, case):
    tf_bytes = tensorflow_says["encoded"][f"{case}/content"]
    assert_same(decode(tensor_pb2.TensorProto.FromString(tf_bytes)), TF_CASES[case])


@pytest.mark.parametrize("name", TF_FILLS)
def test_we_decode_tensorflows_single_value_fill(tensorflow_says, name):
    proto = tensor_pb2.TensorProto.FromString(tensorflow_says["fill_encoded"][name])
    assert_same(decode(proto), np.full(FILL_SHAPE, TF_FILLS[name], dtype=np.dtype(name)))


# --- properties ----------------------------------------------------------------------------------

SAMPLE_SHAPES = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4)
ANY_ARRAY = st.one_of(
    hnp.arrays(st.sampled_from([d for d in DTYPES if d.kind != "O"]), SAMPLE_SHAPES),
    hnp.arrays(np.dtype(object), SAMPLE_SHAPES, elements=st.binary(max_size=8)),
)


@settings(max_examples=200, deadline=None)
@given(ANY_ARRAY)
def test_any_array_round_trips(array):
    assert_same(decode(codec.to_tensor_proto(array)), array)
    typed = decode(typed_proto(array))  # typed floats pass through Python floats: NaN payloads may change
    assert typed.dtype == array.dtype and typed.shape == array.shape
    np.testing.assert_array_equal(typed, array)


INT32, INT64 = st.integers(-(2**31), 2**31 - 1), st.integers(-(2**63), 2**63 - 1)
VALUE_STRATEGIES = {
    "half_val": INT32, "float_val": st.floats(width=32), "double_val": st.floats(), "int_val": INT32,
    "string_val": st.binary(max_size=16), "scomplex_val": st.floats(width=32), "int64_val": INT64,
    "bool_val": st.booleans(), "dcomplex_val": st.floats(), "uint32_val": st.integers(0, 2**32 - 1),
    "uint64_val": st.integers(0, 2**64 - 1),
}
HOSTILE_DIMS = st.lists(
    st.one_of(st.integers(-2, 6), INT64, st.sampled_from([0, 2**31, 2**32 + 1, 2**62, 2**63 - 1])),
    max_size=codec.MAX_RANK + 3,
)
HOSTILE_MAX_ELEMENTS = 4096


@st.composite
def hostile_protos(draw) -> tensor_pb2.TensorProto:
    proto = tensor_pb2.TensorProto(dtype=draw(st.one_of(st.sampled_from(list(DT.values())), INT32)))
    proto.tensor_shape.dim.extend(tensor_shape_pb2.TensorShapeProto.Dim(size=size) for size in draw(HOSTILE_DIMS))
    proto.tensor_shape.unknown_rank = draw(st.booleans())
    proto.tensor_content = draw(st.binary(max_size=64))
    for field in draw(st.lists(st.sampled_from(sorted(VALUE_STRATEGIES)), max_size=2, unique=True)):
        getattr(proto, field).extend(draw(st.lists(VALUE_STRATEGIES[field], max_size=8)))
    return tensor_pb2.TensorProto.FromString(proto.SerializeToString())


@settings(max_examples=400, deadline=None)
@given(hostile_protos())
def test_hostile_protos_get_domain_errors_and_no_large_allocation(proto):
    result = None
    tracemalloc.start()
    try:
        result = codec.to_ndarray(proto, "x", max_elements=HOSTILE_MAX_ELEMENTS)
    except (InvalidArgument, ResourceExhausted) as exc:
        assert exc.message.startswith("input 'x': ")
    finally:
        peak_bytes = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak_bytes < 256 * 1024  # the largest legal result here is 4096 x 8 bytes
    if result is not None:
        assert result.dtype == codec.numpy_dtype(proto.dtype)
        assert result.shape == tuple(dim.size for dim in proto.tensor_shape.dim)
