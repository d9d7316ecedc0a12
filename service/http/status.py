"""The one table from domain error codes to HTTP statuses, and the `{"error": ...}` body every door answers with.

The statuses are TensorFlow Serving's (model_servers/http_server.cc, ToHTTPStatusCode), with one
deliberate difference: RESOURCE_EXHAUSTED is 413, not 429. Our RESOURCE_EXHAUSTED only ever means
"this request is over a configured size limit" (a full queue is UNAVAILABLE, 503), and 429 would
tell clients to send the same oversized request again later.
"""

from __future__ import annotations

import logging

from service.errors import ErrorCode, ServingError

log = logging.getLogger(__name__)
MAX_MESSAGE_CHARS = 1024

HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.INVALID_ARGUMENT: 400,
    ErrorCode.FAILED_PRECONDITION: 400,
    ErrorCode.UNAUTHENTICATED: 401,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.RESOURCE_EXHAUSTED: 413,
    ErrorCode.CANCELLED: 499,  # the client closed the request (nginx's code, as TF Serving uses)
    ErrorCode.INTERNAL: 500,
    ErrorCode.UNIMPLEMENTED: 501,
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.DEADLINE_EXCEEDED: 504,
}


def http_error(exc: BaseException) -> tuple[int, ErrorCode, str]:
    """(HTTP status, domain code, message at most MAX_MESSAGE_CHARS) for an exception raised serving a request.

    Anything but a ServingError is a bug on our side: logged with its traceback, answered 500
    without internals.
    """
    if isinstance(exc, ServingError):
        return HTTP_STATUS[exc.code], exc.code, _shorten(exc.message)
    log.exception("unexpected error while serving an HTTP request", exc_info=exc)
    return 500, ErrorCode.INTERNAL, f"internal error: {type(exc).__name__}"


def _shorten(message: str) -> str:
    if len(message) <= MAX_MESSAGE_CHARS:
        return message
    return message[: MAX_MESSAGE_CHARS - 40] + f"... ({len(message) - MAX_MESSAGE_CHARS + 40} more characters)"
