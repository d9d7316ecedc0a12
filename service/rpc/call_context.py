"""What a gRPC call carries besides its message, as every gRPC door reads it: the variant choice and the deadline."""

from __future__ import annotations

import time

import grpc

from service.repository.variants import VARIANT_METADATA_KEY


def variant_of(context: grpc.aio.ServicerContext | None) -> str | None:
    """The per-request variant from the call's `x-batchwise-variant` metadata, or None."""
    for key, value in (context.invocation_metadata() or ()) if context is not None else ():
        if key == VARIANT_METADATA_KEY:
            return value
    return None


def deadline_of(context: grpc.aio.ServicerContext) -> float | None:
    """The call's deadline as an absolute time.monotonic() value, or None."""
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining
