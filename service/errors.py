"""Domain errors with a transport-neutral code; rpc/status.py maps codes to gRPC statuses once."""

from __future__ import annotations

import enum


class ErrorCode(enum.Enum):
    """Why a request failed. Names match gRPC's canonical codes."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    UNAVAILABLE = "UNAVAILABLE"
    CANCELLED = "CANCELLED"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    UNIMPLEMENTED = "UNIMPLEMENTED"
    INTERNAL = "INTERNAL"


class ServingError(Exception):
    """A request-level failure with a code and a message meant for the client."""

    code: ErrorCode = ErrorCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(ServingError):
    """The request is malformed or does not match the signature."""

    code = ErrorCode.INVALID_ARGUMENT


class NotFound(ServingError):
    """Unknown model, version, label, signature or variant."""

    code = ErrorCode.NOT_FOUND


class ResourceExhausted(ServingError):
    """A configured size limit was exceeded."""

    code = ErrorCode.RESOURCE_EXHAUSTED


class DeadlineExceeded(ServingError):
    """The caller's deadline passed before the work ran."""

    code = ErrorCode.DEADLINE_EXCEEDED


class Unavailable(ServingError):
    """Transient: queue full, shutting down, or the version is unloading. Safe to retry."""

    code = ErrorCode.UNAVAILABLE


class Cancelled(ServingError):
    """The caller went away."""

    code = ErrorCode.CANCELLED


class FailedPrecondition(ServingError):
    """The request is valid but the server is not configured to serve it."""

    code = ErrorCode.FAILED_PRECONDITION


class Unauthenticated(ServingError):
    """Missing or wrong credentials."""

    code = ErrorCode.UNAUTHENTICATED


class Unimplemented(ServingError):
    """The method exists in the API but is switched off or not supported."""

    code = ErrorCode.UNIMPLEMENTED


class Internal(ServingError):
    """A bug or a model failure on our side; the message says what failed, not how to retry."""

    code = ErrorCode.INTERNAL


class ModelLoadError(Exception):
    """An artifact could not be loaded or failed its checks; never sent to clients as-is."""
