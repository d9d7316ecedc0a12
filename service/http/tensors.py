"""JSON values <-> numpy arrays for both REST doors: strict about types, ranks and ragged lists.

Numbers become arrays of the dtype asked for only when every value fits it: integers for integer
dtypes (in range), integers or decimals for floating dtypes, true/false for bool. Strings become
object arrays of UTF-8 `bytes`; where `b64` is allowed, a `{"b64": "..."}` object carries bytes
in base64 (TF Serving's convention). Every error names the field and says what was expected.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import numpy as np

from service.errors import InvalidArgument

MAX_RANK = 32
B64 = "b64"
_KINDS = {"f": ("f", "i", "u"), "i": ("i", "u"), "u": ("i", "u"), "b": ("b",)}
_KIND_WORDS = {"f": "numbers", "i": "integers", "u": "non-negative integers", "b": "true/false values"}


def is_b64(value: Any) -> bool:
    """True for a `{"b64": "..."}` object (TF Serving's binary string)."""
    return type(value) is dict and len(value) == 1 and B64 in value


def to_array(value: Any, dtype: np.dtype, field: str, *, b64: bool = True) -> np.ndarray:
    """The JSON `value` (scalar or nested lists) as an array of `dtype` (object = strings)."""
    if dtype == np.dtype(object):
        return string_array(value, field, b64=b64)
    return numeric_array(value, dtype, field)


def numeric_array(value: Any, dtype: np.dtype, field: str) -> np.ndarray:
    """Nested lists of numbers (or bools) -> array of `dtype`; InvalidArgument if one does not fit."""
    try:
        raw = np.asarray(value)
    except (ValueError, TypeError):
        raise InvalidArgument(
            f"{field}: expected a regular nested list of {_words(dtype)} (a tensor), got lists of different lengths"
        ) from None
    if raw.ndim > MAX_RANK:
        raise InvalidArgument(f"{field}: rank {raw.ndim} is over the limit of {MAX_RANK}")
    if raw.size == 0 and raw.dtype.kind == "f":  # [] parses as float64: no value to check
        return raw.astype(dtype)
    if raw.dtype.kind not in _KINDS[dtype.kind]:
        raise InvalidArgument(f"{field}: expected {_words(dtype)} for dtype {dtype.name}, got {_describe(raw)}")
    if dtype.kind in "iu" and raw.size:
        info = np.iinfo(dtype)
        low, high = raw.min(), raw.max()
        if low < info.min or high > info.max:
            bad = low if low < info.min else high
            raise InvalidArgument(f"{field}: value {bad} does not fit dtype {dtype.name} ({info.min}..{info.max})")
    return raw.astype(dtype, copy=False)


def string_array(value: Any, field: str, *, b64: bool = True) -> np.ndarray:
    """Nested lists of strings (or b64 objects) -> object array of bytes."""
    flat: list[bytes] = []
    shape = _walk_strings(value, flat, field, b64, 0)
    array = np.empty(len(flat), dtype=object)
    array[:] = flat
    return array.reshape(shape)


def _walk_strings(value: Any, flat: list[bytes], field: str, b64: bool, depth: int) -> tuple[int, ...]:
    if type(value) is list:
        if depth >= MAX_RANK:
            raise InvalidArgument(f"{field}: rank over the limit of {MAX_RANK}")
        shapes = {_walk_strings(item, flat, field, b64, depth + 1) for item in value}
        if len(shapes) > 1:
            raise InvalidArgument(
                f"{field}: expected a regular nested list of strings (a tensor), "
                "got lists of different lengths or depths"
            )
        return (len(value), *(shapes.pop() if shapes else ()))
    flat.append(_string_bytes(value, field, b64))
    return ()


def _string_bytes(value: Any, field: str, b64: bool) -> bytes:
    if type(value) is str:
        return value.encode("utf-8", "surrogatepass")
    if b64 and is_b64(value) and type(value[B64]) is str:
        try:
            return base64.b64decode(value[B64], validate=True)
        except (binascii.Error, ValueError):
            raise InvalidArgument(f'{field}: the "b64" value is not valid base64') from None
    expected = 'a string or {"b64": "<base64>"}' if b64 else "a string"
    raise InvalidArgument(f"{field}: expected {expected} for a string tensor, got {_json_type(value)}")


def _words(dtype: np.dtype) -> str:
    return _KIND_WORDS[dtype.kind]


def _describe(raw: np.ndarray) -> str:
    kinds = {"U": "strings", "f": "decimal numbers", "i": "integers", "u": "integers", "b": "true/false values"}
    if raw.dtype.kind == "O":
        return "mixed values, objects, nulls or integers too large for 64 bits"
    return kinds.get(raw.dtype.kind, f"values of kind {raw.dtype.kind!r}")


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "a list", bool: "true/false", int: "a number", float: "a number",
             np.ndarray: "a list of numbers"}  # fmt: skip
    return "null" if value is None else names.get(type(value), type(value).__name__)


def jsonable(value: np.ndarray, name: str) -> Any:
    """An output array as orjson serializes it (with OPT_SERIALIZE_NUMPY): numeric arrays as they are
    (C-contiguous), strings as UTF-8 text, or `{"b64": ...}` when the name ends in `_bytes` (TF Serving's
    rule) or the bytes are not UTF-8."""
    if value.dtype != np.dtype(object):
        if value.dtype == np.float16:
            value = value.astype(np.float32)
        return np.ascontiguousarray(value)
    force_b64 = name.endswith("_bytes")
    return _map_strings(value.tolist(), force_b64)


def _map_strings(value: Any, force_b64: bool) -> Any:
    if type(value) is list:
        return [_map_strings(item, force_b64) for item in value]
    if isinstance(value, str):
        value = value.encode("utf-8")
    if not force_b64:
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            pass
    return {B64: base64.b64encode(value).decode("ascii")}
