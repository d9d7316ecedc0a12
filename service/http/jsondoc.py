"""JSON request documents with their numeric tensors decoded straight to numpy.

`loads(raw)` returns what `orjson.loads(raw)` would, except that an array of numbers nested
regularly (a tensor, at least MIN_TENSOR_BYTES of JSON) comes back as an np.ndarray: int64 when
every value is an integer that fits, float64 otherwise, exactly what `np.asarray` makes of the
lists. The decoders (tfjson, v2json via tensors.numeric_array) treat such an array as the list
it was, so this changes speed, never meaning.

Why: building a Python float per value and then an array from nested lists costs ~240 µs for one
28x28 image (orjson 70 µs + np.asarray 140 µs + checks), most of the event loop's time per REST
request. simdjson parses the text into its tape and copies the numbers into one buffer in C:
~35 µs for the same body (docs/protocols.md has the measurement).

How a tensor is recognised, without visiting its values from Python:
  - simdjson's `as_buffer` copies every number of the array, flattened, as int64 (when all are
    integers that fit) or float64, and fails on anything that is not a number;
  - the shape is read down the first elements, and the array must hold prod(shape) numbers;
  - regularity is proven once for the whole document: the structure of the text (its `[]{},:`
    outside strings, `structure(raw)`) must equal the structure of the decoded value, where each
    tensor stands for a dense array of its shape. A ragged array, or one whose depth varies,
    differs from a dense one of its first-element shape, so any such array makes the document
    fall back to orjson as a whole.
Text simdjson refuses is handed to orjson, which either names the error or accepts it, so the
documents accepted and the error messages are orjson's.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from typing import Any

import numpy as np
import orjson
import simdjson

MIN_TENSOR_VALUES = 32  # smaller arrays are as fast as lists, and stay lists
_CACHED_SKELETON_BYTES = 1 << 16
_STRING = re.compile(rb'"[^"]*"')
_NOT_STRUCTURE = bytes(range(256)).translate(None, b"[]{},:")  # every byte but these six


def loads(raw: bytes, min_tensor_values: int = MIN_TENSOR_VALUES, text_structure: bytes | None = None) -> Any:
    """`raw` parsed as JSON, numeric tensors of at least `min_tensor_values` numbers as numpy arrays
    (see the module docstring). `text_structure` is `structure(raw)` if the caller has it already.

    Raises orjson.JSONDecodeError (a ValueError naming the position) if `raw` is not JSON.
    """
    try:
        document = simdjson.Parser().parse(raw)
    except (ValueError, RuntimeError):  # RuntimeError: an integer beyond 64 bits (orjson reads it as a float)
        return orjson.loads(raw)
    tensors: list[np.ndarray] = []
    value = _value(document, min_tensor_values, tensors)
    if tensors and _structure_of(value) != (structure(raw) if text_structure is None else text_structure):
        return orjson.loads(raw)  # an array that looked dense is not: lists, as orjson makes them
    return value


def structure(raw: bytes) -> bytes:
    """The JSON text's brackets, braces, commas and colons outside strings, in order: its shape
    without its values. (Escaped backslashes and quotes go first, then every string literal.)"""
    if b"\\" in raw:
        raw = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    return _STRING.sub(b"", raw).translate(None, _NOT_STRUCTURE)


def as_list(value: Any) -> Any:
    """`value` with an array from `loads` turned back into nested lists (for fields that are lists
    of numbers but not tensors, such as a v2 shape)."""
    return value.tolist() if isinstance(value, np.ndarray) else value


def _value(element: Any, min_values: int, tensors: list[np.ndarray]) -> Any:
    """`element` as Python values; each tensor found is also appended to `tensors` (for the check in `loads`)."""
    if isinstance(element, simdjson.Object):
        return _object(element, min_values, tensors)
    if isinstance(element, simdjson.Array):
        return _array(element, min_values, tensors)
    return element


def _object(element: simdjson.Object, min_values: int, tensors: list[np.ndarray]) -> dict:
    """Members looked up by key (items() would build lists); as_dict(), orjson's meaning, when a key
    repeats (the last one wins) or cannot be looked up (simdjson misses keys with some escapes)."""
    keys = list(element)
    if len(set(keys)) == len(keys):
        try:
            return {key: _value(element[key], min_values, tensors) for key in keys}
        except KeyError:
            pass
    return element.as_dict()


def _array(array: simdjson.Array, min_values: int, tensors: list[np.ndarray]) -> Any:
    tensor = _tensor(array, min_values)
    if tensor is not None:
        tensors.append(tensor)
        return tensor
    if len(array) and isinstance(array[0], simdjson.Object | simdjson.Array):
        return [_value(item, min_values, tensors) for item in array]
    return array.as_list()


def _tensor(array: simdjson.Array, min_values: int) -> np.ndarray | None:
    """The array as an int64/float64 array of its first-element shape, or None if it holds anything
    but numbers, too few of them, or not prod(shape) of them. Dense or not is checked by `loads`."""
    try:
        flat = np.frombuffer(array.as_buffer(of_type="i"), dtype=np.int64)
    except TypeError:  # not all integers: numbers, or something else
        try:
            flat = np.frombuffer(array.as_buffer(of_type="d"), dtype=np.float64)
        except (TypeError, ValueError, RuntimeError):
            return None
    except (ValueError, RuntimeError):  # an integer beyond int64: np.asarray would not make int64
        return None
    if flat.size < max(min_values, 1):
        return None
    shape = _shape(array)
    return flat.reshape(shape) if flat.size == math.prod(shape) else None


def _structure_of(value: Any) -> bytes:
    """The structure (as `structure`) that the JSON text of `value` has, each tensor a dense array."""
    if type(value) is dict:
        return b"{" + b",".join([b":" + _structure_of(item) for item in value.values()]) + b"}"
    if type(value) is list:
        return b"[" + b",".join([_structure_of(item) for item in value]) + b"]"
    if isinstance(value, np.ndarray):
        return _skeleton(value.shape)
    return b""


def _shape(array: simdjson.Array) -> tuple[int, ...]:
    """The lengths down the first elements: the shape the array has if it is regular."""
    shape, node = [], array
    while isinstance(node, simdjson.Array):
        shape.append(len(node))
        if not shape[-1]:
            break
        node = node[0]
    return tuple(shape)


def _skeleton(shape: tuple[int, ...]) -> bytes:
    """The structure of a dense array of `shape`: its `[`, `]` and `,` in order."""
    if math.prod(shape[:-1]) * (shape[-1] + 2) <= _CACHED_SKELETON_BYTES:
        return _cached_skeleton(shape)
    return _build_skeleton(shape)


@lru_cache(maxsize=128)
def _cached_skeleton(shape: tuple[int, ...]) -> bytes:
    return _build_skeleton(shape)


def _build_skeleton(shape: tuple[int, ...]) -> bytes:
    text = b""
    for length in reversed(shape):
        text = b"[" + b",".join([text] * length) + b"]"
    return text
