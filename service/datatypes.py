"""The one datatype table: Open Inference Protocol (v2) names <-> numpy dtypes <-> TensorFlow DataType names.

Every door uses this table instead of keeping its own: the TF Serving codec (rpc/codec.py) derives
its TensorProto tables from it, the v2 doors (gRPC and REST) decode and describe tensors with it,
and TF Serving's REST door names dtypes with it. No protobuf here: TF DataTypes are given by their
enum names ("DT_FLOAT"), which rpc/ turns into enum numbers with the generated types_pb2.

API (every lookup raises service.errors.InvalidArgument naming what was expected):
  - `DataType`: one row (v2 name, TF name, native numpy dtype, little-endian wire dtype).
  - `DATATYPES`: every row we support, in a fixed order; `V2_NAMES`, `TF_NAMES`: their names.
  - `from_v2("FP32")`, `from_tf("DT_FLOAT")`: the row for a protocol name.
  - `of_numpy(dtype)`: the row for a numpy dtype (any byte order; object/bytes/str arrays -> BYTES).
String tensors are object arrays of `bytes` in the data plane (v2 BYTES, TF DT_STRING).
Not supported (refused by the lookups): v2 BF16, TF DT_BFLOAT16, complex, quantized and resource types.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from service.errors import InvalidArgument


@dataclass(frozen=True)
class DataType:
    """One element type as each protocol names it.

    `numpy` is the native-byte-order dtype the data plane uses (object for BYTES); `wire` is the
    little-endian dtype of the raw bytes both protocols send (object for BYTES: no fixed width).
    """

    v2: str
    tf: str
    numpy: np.dtype
    wire: np.dtype

    @property
    def is_bytes(self) -> bool:
        """True for BYTES / DT_STRING (variable-length elements, object arrays of bytes)."""
        return self.numpy.kind == "O"

    @property
    def itemsize(self) -> int:
        """Bytes per element on the wire; 0 for BYTES."""
        return 0 if self.is_bytes else self.wire.itemsize


def _row(v2: str, tf: str, wire: str) -> DataType:
    dtype = np.dtype(wire)
    return DataType(v2, tf, dtype.newbyteorder("="), dtype)


DATATYPES: tuple[DataType, ...] = (
    _row("BOOL", "DT_BOOL", "?"),
    _row("UINT8", "DT_UINT8", "u1"),
    _row("UINT16", "DT_UINT16", "<u2"),
    _row("UINT32", "DT_UINT32", "<u4"),
    _row("UINT64", "DT_UINT64", "<u8"),
    _row("INT8", "DT_INT8", "i1"),
    _row("INT16", "DT_INT16", "<i2"),
    _row("INT32", "DT_INT32", "<i4"),
    _row("INT64", "DT_INT64", "<i8"),
    _row("FP16", "DT_HALF", "<f2"),
    _row("FP32", "DT_FLOAT", "<f4"),
    _row("FP64", "DT_DOUBLE", "<f8"),
    _row("BYTES", "DT_STRING", "O"),
)
V2_NAMES: tuple[str, ...] = tuple(row.v2 for row in DATATYPES)
TF_NAMES: tuple[str, ...] = tuple(row.tf for row in DATATYPES)
BYTES = DATATYPES[-1]

_BY_V2 = {row.v2: row for row in DATATYPES}
_BY_TF = {row.tf: row for row in DATATYPES}
# (kind, itemsize) -> row: independent of byte order.
_BY_KIND = {(row.numpy.kind, row.numpy.itemsize): row for row in DATATYPES if not row.is_bytes}
_BY_NATIVE = {row.numpy: row for row in DATATYPES}  # fast path: the dtypes models take and return
MAX_NAME_CHARS = 32


def from_v2(name: str) -> DataType:
    """The row for a v2 datatype name ("FP32"); InvalidArgument listing the supported names otherwise."""
    row = _BY_V2.get(name)
    if row is None:
        raise InvalidArgument(f"datatype {_shown(name)} is not supported; expected one of {', '.join(V2_NAMES)}")
    return row


def from_tf(name: str) -> DataType:
    """The row for a TF DataType enum name ("DT_FLOAT"); InvalidArgument listing the supported names otherwise."""
    row = _BY_TF.get(name)
    if row is None:
        raise InvalidArgument(f"dtype {_shown(name)} is not supported; expected one of {', '.join(TF_NAMES)}")
    return row


def of_numpy(dtype: object, names: Sequence[str] = V2_NAMES) -> DataType:
    """The row for a numpy dtype (anything np.dtype accepts, any byte order).

    Object, bytes ('S'), str ('U') and numpy 2's StringDType map to BYTES. Raises InvalidArgument
    for dtypes no protocol here can carry (complex, datetime, structured, ...), listing `names`
    (the caller's protocol's names for the supported types) as what was expected.
    """
    known = _BY_NATIVE.get(dtype) if isinstance(dtype, np.dtype) else None
    if known is not None:
        return known
    try:
        resolved = np.dtype(dtype)  # type: ignore[call-overload]
    except TypeError:
        raise InvalidArgument(f"{dtype!r} is not a numpy dtype") from None
    if resolved.kind in "OSUT":
        return BYTES
    row = _BY_KIND.get((resolved.kind, resolved.itemsize))
    if row is None or resolved.fields is not None:
        raise InvalidArgument(f"numpy dtype {resolved} is not supported; expected one of {', '.join(names)}")
    return row


def _shown(name: object) -> str:
    """`name` quoted for an error message, cut so a hostile name cannot bloat it."""
    text = repr(name)
    return text if len(text) <= MAX_NAME_CHARS else text[:MAX_NAME_CHARS] + "..."
