"""Rebuild grpc.aio method handlers: refuse calls unread, or guard a handler against unparseable messages.

Server interceptors (auth, malformed-message guard) work on the `grpc.RpcMethodHandler` that a
method lookup returns. These helpers keep the handler's kind (unary or streaming, each way) and
the async shape of its behaviour (coroutine or async generator), which grpc.aio dispatches on.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from service.rpc.pipeline import StageInterceptor

_BUILDERS = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}
_FIELDS = {
    (False, False): "unary_unary",
    (False, True): "unary_stream",
    (True, False): "stream_unary",
    (True, True): "stream_stream",
}
MAX_PARSE_ERROR_CHARS = 200


def _kind(handler: grpc.RpcMethodHandler | None) -> tuple[bool, bool]:
    if handler is None:
        return (False, False)
    return (bool(handler.request_streaming), bool(handler.response_streaming))


def refusing_handler(
    handler: grpc.RpcMethodHandler | None, code: grpc.StatusCode, message: str
) -> grpc.RpcMethodHandler:
    """A handler of `handler`'s kind (unary-unary for None) that ends every call with `code`.

    The request is never parsed: the deserializer is the identity on raw bytes.
    """
    kind = _kind(handler)

    async def refuse(request_or_iterator: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(code, message)

    return _BUILDERS[kind](refuse)


class Malformed:
    """What the tolerant deserializer returns for bytes that do not parse as the request type."""

    def __init__(self, error: str) -> None:
        self.error = error[:MAX_PARSE_ERROR_CHARS]


def tolerant(deserializer: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    """Wrap a protobuf deserializer so that a parse failure returns Malformed instead of raising."""

    def deserialize(raw: bytes) -> Any:
        try:
            return deserializer(raw)
        except DecodeError as exc:
            return Malformed(str(exc))

    return deserialize


async def refuse_malformed(request: Any, context: grpc.aio.ServicerContext) -> None:
    """Abort with INVALID_ARGUMENT if `request` is Malformed; otherwise return."""
    if isinstance(request, Malformed):
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"the request message does not parse: {request.error}")


def guard_malformed(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """`handler` with a tolerant deserializer and a behaviour that refuses Malformed messages."""
    kind = _kind(handler)
    behaviour = getattr(handler, _FIELDS[kind])
    wrapped = _guard_stream_requests(behaviour) if kind[0] else _guard_unary_request(behaviour)
    return _BUILDERS[kind](
        wrapped,
        request_deserializer=tolerant(handler.request_deserializer),
        response_serializer=handler.response_serializer,
    )


def _guard_unary_request(behaviour: Callable) -> Callable:
    if inspect.isasyncgenfunction(behaviour):

        async def stream_replies(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            await refuse_malformed(request, context)
            async for reply in behaviour(request, context):
                yield reply

        return stream_replies

    async def reply(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await refuse_malformed(request, context)
        return await behaviour(request, context)

    return reply


def _guard_stream_requests(behaviour: Callable) -> Callable:
    async def checked(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        async for request in requests:
            await refuse_malformed(request, context)
            yield request

    if inspect.isasyncgenfunction(behaviour):

        async def stream_replies(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext):
            async for reply in behaviour(checked(requests, context), context):
                yield reply

        return stream_replies

    async def reply(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> Any:
        return await behaviour(checked(requests, context), context)

    return reply


class MalformedRequestInterceptor(StageInterceptor):
    """Answers request messages that do not parse with INVALID_ARGUMENT.

    Without it grpc.aio answers UNKNOWN ("Unexpected DecodeError") and logs a traceback per call.
    Guarded handlers are cached per method.
    """

    def __init__(self) -> None:
        self._cache: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    def apply(self, handler: grpc.RpcMethodHandler | None, handler_call_details: grpc.HandlerCallDetails):
        """The guarded handler for this method (cached); a pipeline stage."""
        if handler is None or handler.request_deserializer is None:
            return handler
        cached = self._cache.get(handler_call_details.method)
        if cached is None or cached[0] is not handler:
            cached = (handler, guard_malformed(handler))
            self._cache[handler_call_details.method] = cached
        return cached[1]
