"""Checks on a declared tensor shape before anything is allocated: rank, sizes and the element limit.

Transport-neutral: every door's decoder (TF Serving TensorProto, v2 gRPC, v2 and TF Serving JSON)
calls `check_shape` with the shape the client declared, before reading any values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from service.errors import InvalidArgument, ResourceExhausted

# numpy 1.x supports at most 32 dimensions; TF allows 254 but no served model needs that many.
MAX_RANK = 32


def check_shape(shape: Sequence[int], max_elements: int, field: str = "shape") -> tuple[tuple[int, ...], int]:
    """The declared shape as a tuple and its element count.

    Raises InvalidArgument for rank above MAX_RANK or a negative size, and ResourceExhausted when
    any one dimension or the element count is over `max_elements` (so a 0 elsewhere cannot hide a
    huge dimension). Messages start with `field`, the name of the shape in the client's message.
    """
    shape = tuple(shape)
    if len(shape) > MAX_RANK:
        raise InvalidArgument(f"{field} has rank {len(shape)}; expected at most {MAX_RANK} dimensions")
    if not shape or (min(shape) >= 0 and max(shape) <= max_elements):  # the usual case: no per-axis walk
        count = math.prod(shape)
        if count <= max_elements:
            return shape, count
    count = 1
    for axis, size in enumerate(shape):
        if size < 0:
            raise InvalidArgument(f"{field} {list(shape)} has dimension {axis} = {size}; expected sizes >= 0")
        if size > max_elements:
            raise ResourceExhausted(
                f"{field} dimension {axis} = {size} is over the limit of {max_elements} elements per tensor"
            )
        count *= size  # Python int: cannot overflow, and stays small because every factor is bounded
    if count > max_elements:
        raise ResourceExhausted(
            f"{field} {list(shape)} has {count} elements, over the limit of {max_elements} elements per tensor"
        )
    return shape, count


def check_string_fill(value_bytes: int, count: int, max_string_bytes: int, field: str) -> None:
    """Refuse one `value_bytes`-long string that would fill `count` elements past `max_string_bytes` in all."""
    if count > 1 and value_bytes * count > max_string_bytes:
        raise ResourceExhausted(
            f"{field} holds one {value_bytes}-byte value that would fill {count} elements "
            f"({value_bytes * count} bytes), over the limit of {max_string_bytes} bytes"
        )
