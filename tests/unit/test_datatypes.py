"""The one datatype table: v2 names, TF DataType names and numpy dtypes agree, and lookups refuse clearly."""

from __future__ import annotations

import numpy as np
import pytest

from service import datatypes
from service.api import types_pb2
from service.errors import InvalidArgument
from service.rpc.codec import datatype_of, numpy_dtype


@pytest.mark.parametrize("row", datatypes.DATATYPES, ids=lambda row: row.v2)
def test_every_row_round_trips_through_each_name(row):
    assert datatypes.from_v2(row.v2) is row
    assert datatypes.from_tf(row.tf) is row
    assert datatypes.of_numpy(row.numpy) is row
    assert datatypes.of_numpy(row.wire) is row  # any byte order
    # The TF Serving codec derives its table from this one.
    assert numpy_dtype(types_pb2.DataType.Value(row.tf)) == row.numpy
    assert datatype_of(row.numpy) == types_pb2.DataType.Value(row.tf)


def test_the_table_covers_the_v2_datatypes_our_models_can_use():
    assert set(datatypes.V2_NAMES) == {
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
    }
    assert datatypes.from_v2("FP32").numpy == np.float32 and datatypes.from_v2("FP32").itemsize == 4
    assert datatypes.from_v2("BYTES").is_bytes and datatypes.from_v2("BYTES").itemsize == 0
    assert datatypes.from_tf("DT_HALF").v2 == "FP16"


@pytest.mark.parametrize("dtype", [np.dtype("S3"), np.dtype("U2"), np.dtype(object)])
def test_string_like_numpy_dtypes_are_bytes(dtype):
    assert datatypes.of_numpy(dtype) is datatypes.BYTES


def test_lookups_refuse_unknown_names_and_say_what_is_expected():
    with pytest.raises(InvalidArgument, match=r"datatype 'BF16' is not supported; expected one of BOOL, .*BYTES"):
        datatypes.from_v2("BF16")
    with pytest.raises(InvalidArgument, match=r"dtype 'DT_BFLOAT16' is not supported; expected one of DT_BOOL"):
        datatypes.from_tf("DT_BFLOAT16")
    with pytest.raises(InvalidArgument, match="numpy dtype complex64 is not supported"):
        datatypes.of_numpy(np.complex64)
    with pytest.raises(InvalidArgument, match=r"'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\.\.\. is not supported"):
        datatypes.from_v2("x" * 10_000)  # a hostile name is cut
