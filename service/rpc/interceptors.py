"""gRPC server interceptor: calls counted and timed per method and code, request ids, sampled access logs."""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
import os
import random
import time
from collections.abc import Callable

import grpc

from service.logs import REQUEST_ID
from service.metrics import NO_PROTOCOL, TFSERVING_GRPC, UNKNOWN_METHOD, V2_GRPC, Metrics
from service.rpc.pipeline import StageInterceptor
from service.rpc.status import cancelled_code

REQUEST_ID_KEY = "x-request-id"
MAX_REQUEST_ID_CHARS = 128
access_log = logging.getLogger("service.access")
_ID_PREFIX = os.urandom(6).hex() + "-"
_ID_COUNTER = itertools.count(1)
# gRPC service-name prefix -> the metrics' protocol label; other methods (health, reflection) have none.
_PROTOCOL_PREFIXES = (("/tensorflow.serving.", TFSERVING_GRPC), ("/inference.", V2_GRPC))
_HANDLER_FACTORIES = {
    (False, False): ("unary_unary", grpc.unary_unary_rpc_method_handler),
    (False, True): ("unary_stream", grpc.unary_stream_rpc_method_handler),
    (True, False): ("stream_unary", grpc.stream_unary_rpc_method_handler),
    (True, True): ("stream_stream", grpc.stream_stream_rpc_method_handler),
}


class ObservabilityInterceptor(StageInterceptor):
    """Wraps every registered method (health, reflection and metadata included) to:

    - count the finished call by method, protocol (protocol_of) and its real gRPC code (aborts
      included) and time it, when `metrics` is given;
    - give the call a request id: the client's `x-request-id` metadata if it is printable and at
      most 128 characters, else a generated one. It is in service.logs.REQUEST_ID (so in every
      log line) while the call runs. (It is not echoed back: trailing metadata costs throughput;
      clients that want to correlate send their own.)
    - access-log a random `access_log_sample_rate` fraction of calls to the `service.access` logger.

    Calls to unregistered methods count as method="unknown", code UNIMPLEMENTED (the method
    name comes from the client and must not become a label). Put this interceptor first, so it
    also sees calls that later interceptors refuse. Handlers are wrapped once per method.
    NOTE: each call runs in its own asyncio task, so setting REQUEST_ID needs no reset.
    """

    def __init__(self, metrics: Metrics | None, access_log_sample_rate: float = 0.0) -> None:
        self._metrics = metrics
        self._sample_rate = access_log_sample_rate
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    def apply(
        self, handler: grpc.RpcMethodHandler | None, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        """The observed handler for this call (see the class docstring); a pipeline stage."""
        if handler is None:
            if self._metrics is not None:
                self._metrics.observe_rpc(UNKNOWN_METHOD, grpc.StatusCode.UNIMPLEMENTED.name, None)
            return None
        # NOTE: interceptors run in the call's own task, before its handler: the id set here is the call's.
        REQUEST_ID.set(request_id_of(handler_call_details.invocation_metadata))
        method = handler_call_details.method
        cached = self._wrapped.get(method)
        if cached is None or cached[0] is not handler:
            cached = self._wrapped[method] = (handler, self._wrap(handler, method))
        return cached[1]

    def _wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        attribute, factory = _HANDLER_FACTORIES[(handler.request_streaming, handler.response_streaming)]
        behavior = getattr(handler, attribute)
        wrapped = self._wrap_stream(behavior, method) if inspect.isasyncgenfunction(behavior) else (
            self._wrap_call(behavior, method)
        )
        return factory(wrapped, handler.request_deserializer, handler.response_serializer)

    def _wrap_call(self, behavior: Callable, method: str) -> Callable:
        """A coroutine handler (unary responses, or streams written with context.write).

        NOTE: the hot path of every call: timing and outcome inline, no per-call objects.
        """
        record = self.record
        # Without access logs, an OK call goes straight to its pre-resolved children.
        metrics, protocol = self._metrics, protocol_of(method)
        ok = metrics.rpc_children(method, "OK", protocol) if metrics is not None and not self._sample_rate else None

        async def observed(request_or_iterator, context: grpc.aio.ServicerContext):
            started_s = time.perf_counter()
            try:
                response = await behavior(request_or_iterator, context)
            except BaseException as exc:
                record(method, _failure_code(exc, context), time.perf_counter() - started_s, context)
                raise
            if ok is not None and context.code() is None:
                ok[0].inc()
                ok[1].observe(time.perf_counter() - started_s)
            else:
                record(method, _final_code(context), time.perf_counter() - started_s, context)
            return response

        return observed

    def _wrap_stream(self, behavior: Callable, method: str) -> Callable:
        """An async-generator handler (streamed responses)."""

        async def observed(request_or_iterator, context: grpc.aio.ServicerContext):
            with _Observed(self, method, context):
                async for response in behavior(request_or_iterator, context):
                    yield response

        return observed

    def record(self, method: str, code: str, duration_s: float, context: grpc.aio.ServicerContext) -> None:
        """Count and time one finished call, and access-log it if sampled."""
        if self._metrics is not None:
            self._metrics.observe_rpc(method, code, duration_s, protocol_of(method))
        if self._sample_rate and random.random() < self._sample_rate:
            fields = {"method": method, "code": code, "duration_ms": round(duration_s * 1000, 3),
                      "peer": context.peer(), "request_id": REQUEST_ID.get()}
            access_log.info("%(method)s %(code)s %(duration_ms).3fms peer=%(peer)s", fields, extra=fields)


class _Observed:
    """Times one call and reports it with the code its client sees, however the handler ends."""

    __slots__ = ("_context", "_interceptor", "_method", "_started_s")

    def __init__(self, interceptor: ObservabilityInterceptor, method: str, context: grpc.aio.ServicerContext) -> None:
        self._interceptor = interceptor
        self._method = method
        self._context = context
        self._started_s = time.perf_counter()

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type | None, exc: BaseException | None, traceback: object) -> None:
        duration_s = time.perf_counter() - self._started_s
        code = _final_code(self._context) if exc is None else _failure_code(exc, self._context)
        self._interceptor.record(self._method, code, duration_s, self._context)


def protocol_of(method: str) -> str:
    """The protocol label of a gRPC method ("/inference.GRPCInferenceService/ModelInfer" -> "v2_grpc")."""
    for prefix, protocol in _PROTOCOL_PREFIXES:
        if method.startswith(prefix):
            return protocol
    return NO_PROTOCOL


def request_id_of(metadata: tuple | None) -> str:
    """The client's x-request-id if usable (printable, 1-128 chars), else a new process-unique id."""
    for key, value in metadata or ():
        if key == REQUEST_ID_KEY:
            if isinstance(value, str) and 0 < len(value) <= MAX_REQUEST_ID_CHARS and value.isprintable():
                return value
            break
    return f"{_ID_PREFIX}{next(_ID_COUNTER):x}"


def _failure_code(exc: BaseException, context: grpc.aio.ServicerContext) -> str:
    """The code a client sees for a handler that raised: abort's code, or CANCELLED/DEADLINE_EXCEEDED."""
    if isinstance(exc, asyncio.CancelledError | GeneratorExit):
        return cancelled_code(context).name
    code = context.code()  # set by context.abort(); a plain exception reaches the client as UNKNOWN
    return "UNKNOWN" if code is None else code.name


def _final_code(context: grpc.aio.ServicerContext) -> str:
    code = context.code()  # a handler may set_code() and return normally
    return "OK" if code is None else code.name
