"""TF Serving's REST tensors: the row ("instances") and columnar ("inputs") request formats, and their replies.

Row format: "instances" is a list with one item per row. With one named input an item may be the
bare value; otherwise each item is an object of input name -> that row's value. Every row's value
of an input must have the same shape; the rows are stacked into the batch dimension.
Columnar format: "inputs" is the bare tensor (one input) or an object of input name -> tensor.
Replies: row format -> {"predictions": [...]} with one item per row (the bare value when the
signature has one output, else an object per row); columnar -> {"outputs": tensor or object}.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import orjson

from service.errors import InvalidArgument
from service.http.tensors import is_b64, jsonable, to_array
from service.runtime.base import SignatureSpec

ROW, COLUMNAR = "instances", "inputs"


def decode_predict_request(document: dict, spec: SignatureSpec) -> tuple[dict[str, np.ndarray], bool]:
    """The request's inputs as arrays of the signature's dtypes, and True for the row format.

    Raises InvalidArgument naming the field for anything that is not TF Serving's format.
    """
    if (ROW in document) == (COLUMNAR in document):
        raise InvalidArgument(
            'request body: expected exactly one of "instances" (row format) or "inputs" (columnar format)'
        )
    if ROW in document:
        return _rows(document[ROW], spec), True
    return _columns(document[COLUMNAR], spec), False


def _rows(instances: Any, spec: SignatureSpec) -> dict[str, np.ndarray]:
    # an ndarray is a numeric tensor that service/http/jsondoc.py decoded already: one row per item
    if not isinstance(instances, list | np.ndarray) or not len(instances):
        raise InvalidArgument("instances: expected a non-empty list with one item per row")
    first = instances[0]
    if type(first) is dict and not is_b64(first):
        names = first.keys()
        for index, item in enumerate(instances):
            if type(item) is not dict or item.keys() != names:
                raise InvalidArgument(
                    f"instances[{index}]: expected an object with the same input names as instances[0] "
                    f"({', '.join(sorted(names))})"
                )
        return {name: _input(spec, name, [item[name] for item in instances], "instances") for name in names}
    name = _only_input(spec, "instances")
    return {name: _input(spec, name, instances, "instances")}


def _columns(inputs: Any, spec: SignatureSpec) -> dict[str, np.ndarray]:
    if type(inputs) is dict and not is_b64(inputs):
        return {name: _input(spec, name, value, "inputs") for name, value in inputs.items()}
    name = _only_input(spec, "inputs")
    return {name: _input(spec, name, inputs, "inputs")}


def _only_input(spec: SignatureSpec, field: str) -> str:
    if len(spec.inputs) != 1:
        names = ", ".join(repr(n) for n in sorted(spec.inputs))
        raise InvalidArgument(
            f"{field}: signature {spec.name!r} has inputs {names}; name them (a JSON object of input name -> value)"
        )
    return next(iter(spec.inputs))


def _input(spec: SignatureSpec, name: str, value: Any, field: str) -> np.ndarray:
    tensor = spec.inputs.get(name)
    if tensor is None:
        names = ", ".join(repr(n) for n in sorted(spec.inputs))
        raise InvalidArgument(f"{field}: unknown input {name[:64]!r} for signature {spec.name!r}; expected {names}")
    return to_array(value, tensor.dtype, f"{field}: input {name!r}")


def dump_predictions(outputs: Mapping[str, np.ndarray], row_format: bool) -> bytes:
    """The reply body, JSON-encoded. NaN and infinities are written as TF Serving writes them (NaN,
    Infinity, -Infinity, which Python's json, JavaScript's JSON5 and most JSON libraries' lenient modes
    read), by the standard library's json: orjson, the fast path for every other reply, would write null."""
    body = encode_predictions(outputs, row_format)
    if all(value.dtype.kind != "f" or np.isfinite(value).all() for value in outputs.values()):
        return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
    return json.dumps(body, default=_as_python, separators=(",", ":")).encode()


def _as_python(value: np.ndarray | np.generic) -> Any:
    """A numpy array or scalar as the Python value json can write (lists of floats, ints, bools).
    float32 values keep their shortest decimal form (0.1, as orjson writes it, not 0.10000000149011612)."""
    if value.dtype.kind == "f" and value.dtype.itemsize < 8:
        return np.asarray(value).astype(str).astype(np.float64).tolist()
    return value.tolist()


def encode_predictions(outputs: Mapping[str, np.ndarray], row_format: bool) -> dict[str, Any]:
    """The reply body (before JSON encoding) in the request's format."""
    columns = {name: jsonable(value, name) for name, value in outputs.items()}
    if not row_format:
        return {"outputs": next(iter(columns.values())) if len(columns) == 1 else columns}
    if len(columns) == 1:
        return {"predictions": next(iter(columns.values()))}
    rows = {len(value) if np.ndim(value) else -1 for value in outputs.values()}
    if len(rows) != 1 or -1 in rows:
        raise InvalidArgument(
            "instances: the signature's outputs do not share a batch dimension, so they cannot be "
            'returned row by row; use the columnar format ("inputs")'
        )
    count = rows.pop()
    return {"predictions": [{name: column[i] for name, column in columns.items()} for i in range(count)]}
