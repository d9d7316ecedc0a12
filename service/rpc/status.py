"""The one table from domain error codes to gRPC status codes, and the abort helper servicers use."""

from __future__ import annotations

import logging

import grpc

from service.errors import ErrorCode, ServingError

log = logging.getLogger(__name__)
# Status details travel in a trailer; clients refuse trailers over 8-16 KiB (and then report a
# transport error instead of our status). Messages may quote what the client sent, so cap them.
MAX_DETAILS_CHARS = 1024

GRPC_STATUS: dict[ErrorCode, grpc.StatusCode] = {
    ErrorCode.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorCode.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorCode.RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorCode.DEADLINE_EXCEEDED: grpc.StatusCode.DEADLINE_EXCEEDED,
    ErrorCode.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    ErrorCode.CANCELLED: grpc.StatusCode.CANCELLED,
    ErrorCode.FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorCode.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    ErrorCode.UNIMPLEMENTED: grpc.StatusCode.UNIMPLEMENTED,
    ErrorCode.INTERNAL: grpc.StatusCode.INTERNAL,
}


def status_of(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The gRPC status and message (at most MAX_DETAILS_CHARS) for an exception raised while serving a call."""
    if isinstance(exc, ServingError):
        return GRPC_STATUS[exc.code], shorten(exc.message)
    log.exception("unexpected error while serving a call", exc_info=exc)
    return grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}"


def shorten(message: str, limit: int = MAX_DETAILS_CHARS) -> str:
    """`message` cut to `limit` characters, saying how much was cut."""
    if len(message) <= limit:
        return message
    suffix = f"... ({len(message) - limit + 40} more characters)"
    return message[: limit - 40] + suffix


async def abort_with(context: grpc.aio.ServicerContext, exc: BaseException) -> None:
    """Abort the call with the status that `exc` maps to. Never returns."""
    code, message = status_of(exc)
    await context.abort(code, message)


def cancelled_code(context: grpc.aio.ServicerContext) -> grpc.StatusCode:
    """The status a client sees when its call's handler was cancelled: its deadline passed, or it left."""
    remaining = context.time_remaining()
    expired = remaining is not None and remaining <= 0
    return grpc.StatusCode.DEADLINE_EXCEEDED if expired else grpc.StatusCode.CANCELLED
