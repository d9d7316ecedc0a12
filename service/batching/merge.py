"""Pure-numpy batch plumbing: compatibility keys, concatenation with padding, splitting back, chunking."""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence

import numpy as np

from service.errors import InvalidArgument

Tensors = Mapping[str, np.ndarray]
# One (name, dtype, non-batch dimensions) triple per input, sorted by name.
CompatKey = tuple[tuple[str, np.dtype, tuple[int, ...]], ...]


class BatchOutputError(ValueError):
    """The model's outputs cannot be split back into the batch's requests (wrong type or row count)."""


def describe(inputs: Tensors) -> tuple[int, CompatKey]:
    """Return (rows, compatibility key) of a batchable request.

    Two requests may share a batch only if their keys are equal: same input names, dtypes and
    non-batch dimensions. Raises InvalidArgument when `inputs` is empty, holds a non-array or a
    scalar, has 0 rows, or its inputs disagree on the number of rows.
    """
    if not isinstance(inputs, Mapping) or not inputs:
        raise InvalidArgument("the request has no inputs")
    rows = -1
    first = ""
    key = []
    for name in sorted(inputs):
        array = inputs[name]
        if not isinstance(array, np.ndarray):
            raise InvalidArgument(f"input {name!r} is a {type(array).__name__}, not a numpy array")
        if array.ndim == 0:
            raise InvalidArgument(f"input {name!r} is a scalar; batched inputs need a leading batch dimension")
        if rows < 0:
            rows, first = array.shape[0], name
        elif array.shape[0] != rows:
            raise InvalidArgument(
                f"inputs disagree on the batch size: {first!r} has {rows} rows but {name!r} has {array.shape[0]}"
            )
        key.append((name, array.dtype, array.shape[1:]))
    if rows == 0:
        raise InvalidArgument("the request has 0 rows; send at least one")
    return rows, tuple(key)


def loose_rows(inputs: Tensors) -> int:
    """Rows a request counts for admission when it is not batched: its common leading dimension, else 1."""
    leading = {a.shape[0] if isinstance(a, np.ndarray) and a.ndim else 1 for a in inputs.values()}
    return max(1, leading.pop()) if len(leading) == 1 else 1


def padded_size(rows: int, allowed_sizes: Sequence[int]) -> int:
    """The smallest allowed size >= rows (allowed_sizes ascending); rows itself when none is allowed or fits."""
    i = bisect.bisect_left(allowed_sizes, rows)
    return allowed_sizes[i] if i < len(allowed_sizes) else rows


def concat(parts: Sequence[Tensors], pad_rows: int = 0) -> dict[str, np.ndarray]:
    """Concatenate same-named tensors along axis 0, then repeat the last row `pad_rows` times.

    Used both to merge requests into a batch and to reassemble a chunked request's outputs.
    A single part without padding is returned without copying. Raises BatchOutputError when
    the parts do not have the same names.
    """
    names = parts[0].keys()
    if any(part.keys() != names for part in parts[1:]):
        raise BatchOutputError(f"pieces have different tensor names: {sorted(names)} vs others")
    if len(parts) == 1 and pad_rows == 0:
        return dict(parts[0])
    merged = {}
    for name in names:
        arrays = [part[name] for part in parts]
        if pad_rows:
            last = arrays[-1]
            arrays.append(np.broadcast_to(last[-1:], (pad_rows, *last.shape[1:])))
        merged[name] = np.concatenate(arrays)
    return merged


def split(outputs: object, row_counts: Sequence[int], padded_rows: int) -> list[dict[str, np.ndarray]]:
    """Slice a batch's outputs back into one dict per request (views, padding dropped).

    Every output must have exactly `padded_rows` rows. Raises BatchOutputError otherwise, or when
    `outputs` is not a non-empty mapping of arrays.
    """
    arrays = as_outputs(outputs)
    for name, array in arrays.items():
        got = array.shape[0] if array.ndim else "no"
        if got != padded_rows:
            padding = padded_rows - sum(row_counts)
            detail = f" ({padding} of them padding)" if padding else ""
            raise BatchOutputError(
                f"the model returned {got} rows for output {name!r} but the batch had {padded_rows} rows{detail}"
            )
    if len(row_counts) == 1 and row_counts[0] == padded_rows:
        return [arrays]
    parts = []
    start = 0
    for count in row_counts:
        parts.append({name: array[start : start + count] for name, array in arrays.items()})
        start += count
    return parts


def as_outputs(outputs: object) -> dict[str, np.ndarray]:
    """`outputs` as a dict of arrays; raises BatchOutputError unless it is a non-empty mapping."""
    if not isinstance(outputs, Mapping) or not outputs:
        raise BatchOutputError(f"the model returned {type(outputs).__name__} instead of a dict of output arrays")
    return {name: np.asarray(value) for name, value in outputs.items()}


def chunk(inputs: Tensors, rows: int, max_rows: int) -> list[tuple[Tensors, int]]:
    """Cut a request into (piece, rows) pieces of at most `max_rows` rows (views, in order)."""
    if rows <= max_rows:
        return [(inputs, rows)]
    return [
        ({name: array[start : start + max_rows] for name, array in inputs.items()}, min(max_rows, rows - start))
        for start in range(0, rows, max_rows)
    ]
