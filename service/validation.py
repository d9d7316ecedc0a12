"""Checks a decoded request against a signature: names, dtypes, ranks, fixed dims and row counts."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from service.errors import InvalidArgument, ResourceExhausted
from service.runtime.base import SignatureSpec, TensorSpec

# Far above any real signature; checked before decoding so that a message of millions of tiny
# inputs costs one comparison instead of millions of decodes.
MAX_INPUTS = 1024


def check_input_count(count: int) -> None:
    """Raise InvalidArgument when a request names more than MAX_INPUTS inputs."""
    if count > MAX_INPUTS:
        raise InvalidArgument(f"inputs: the request has {count} inputs; at most {MAX_INPUTS} are accepted")


def check_inputs(spec: SignatureSpec, inputs: Mapping[str, np.ndarray], *, max_rows: int) -> int:
    """Validate `inputs` for `spec` and return the shared row count (batch size).

    Raises InvalidArgument naming the offending input, what was expected and what came,
    or ResourceExhausted when the row count is over `max_rows`.
    """
    if inputs.keys() != spec.inputs.keys():
        _check_names(spec, inputs)
    rows: int | None = None
    for name, tensor_spec in spec.inputs.items():
        value = inputs[name]
        _check_dtype(name, tensor_spec, value)
        _check_shape(name, tensor_spec, value)
        if tensor_spec.batched:
            if rows is not None and value.shape[0] != rows:
                raise InvalidArgument(
                    f"inputs: input {name!r} has {value.shape[0]} rows but other inputs have {rows}; "
                    "every batched input must have the same first dimension"
                )
            rows = value.shape[0]
    rows = 1 if rows is None else rows
    if rows > max_rows:
        raise ResourceExhausted(f"inputs: {rows} rows is over the limit of {max_rows} rows per request")
    return rows


def _check_names(spec: SignatureSpec, inputs: Mapping[str, np.ndarray]) -> None:
    expected = set(spec.inputs)
    unknown = sorted(set(inputs) - expected)
    if unknown:
        raise InvalidArgument(
            f"inputs: unknown input {unknown[0]!r} for signature {spec.name!r}; expected {_names(expected)}"
        )
    missing = sorted(expected - set(inputs))
    if missing:
        raise InvalidArgument(f"inputs: missing input {missing[0]!r} for signature {spec.name!r}")


def check_output_filter(spec: SignatureSpec, output_filter: Iterable[str]) -> list[str]:
    """Return the outputs to send (all if the filter is empty); raise InvalidArgument for unknown names."""
    if not output_filter:
        return list(spec.outputs)
    wanted = list(dict.fromkeys(output_filter))
    for name in wanted:
        if name not in spec.outputs:
            raise InvalidArgument(
                f"output_filter: unknown output {name!r} for signature {spec.name!r}; "
                f"expected one of {_names(spec.outputs)}"
            )
    return wanted or list(spec.outputs)


def _check_dtype(name: str, spec: TensorSpec, value: np.ndarray) -> None:
    if value.dtype != spec.dtype:
        raise InvalidArgument(
            f"inputs: input {name!r} expects dtype {_dtype(spec.dtype)} but got {_dtype(value.dtype)}"
        )


def _check_shape(name: str, spec: TensorSpec, value: np.ndarray) -> None:
    want, got = spec.shape, value.shape
    if want is None:
        return
    if spec.batched:  # the usual case first: same rank, same fixed dims, at least one row
        if len(got) == len(want) and got[1:] == want[1:] and got[0]:
            return
    elif got == want:
        return
    if value.ndim != len(spec.shape):
        raise InvalidArgument(
            f"inputs: input {name!r} expects rank {len(spec.shape)} with shape {_shape(spec.shape)} "
            f"but got rank {value.ndim} with shape {list(value.shape)}"
        )
    if spec.batched and value.shape[0] == 0:
        raise InvalidArgument(f"inputs: input {name!r} has an empty batch (0 rows); send at least one row")
    for axis, (want, got) in enumerate(zip(spec.shape, value.shape, strict=True)):
        if want is not None and want != got:
            raise InvalidArgument(
                f"inputs: input {name!r} expects shape {_shape(spec.shape)} but got {list(value.shape)} "
                f"(dimension {axis})"
            )


def _dtype(dtype: np.dtype) -> str:
    return "string" if dtype == np.dtype(object) else dtype.name


def _shape(shape: tuple[int | None, ...]) -> str:
    return "[" + ", ".join("-1" if d is None else str(d) for d in shape) + "]"


def _names(names: Iterable[str]) -> str:
    return ", ".join(repr(n) for n in sorted(names))
