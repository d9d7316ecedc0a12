"""Our server interceptors as stages of one generic handler instead of grpc.aio's interceptor chain.

grpc.aio runs each interceptor as its own coroutine with its own continuation, per call. Ours only
look at the handler that the method lookup returns and swap it (wrapped once per method, or a
refusing one), so they run as plain functions inside the lookup itself (StagedHandlers); each
also works alone as a grpc.aio interceptor (StageInterceptor), which tests and embedders may use.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import grpc


class Stage(Protocol):
    """An interceptor whose whole work happens after the rest of the chain has found the handler."""

    def apply(
        self, handler: grpc.RpcMethodHandler | None, details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        """The handler to use for this call instead of `handler` (None: the method is unknown)."""
        ...


class StageInterceptor(grpc.aio.ServerInterceptor):
    """A Stage that also works alone as a grpc.aio interceptor: subclasses implement only `apply`."""

    async def intercept_service(self, continuation, handler_call_details: grpc.HandlerCallDetails):
        return self.apply(await continuation(handler_call_details), handler_call_details)

    def apply(
        self, handler: grpc.RpcMethodHandler | None, details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        raise NotImplementedError


class StagedHandlers(grpc.GenericRpcHandler):
    """Every method of the server, found in one dict and passed through `stages`, as one generic handler.

    Servicers register here exactly as on a grpc.aio server (the generated add_*_to_server
    functions, health and reflection call add_generic_rpc_handlers / add_registered_method_handlers);
    the server then gets this object as its only generic handler, and no interceptors.
    `service()` equals running `stages` as grpc.aio interceptors (outermost first, as
    grpc.aio.server(interceptors=...) orders them): the innermost stage sees the looked-up handler
    (None for an unknown method) and each outer stage sees what the stage inside it returned.
    grpc.aio calls it synchronously, in the call's own task, before the handler runs: measured in
    the server, that saves the interceptor chain's coroutines on every call (about 3% more
    throughput at 64 clients than one interceptor running the same stages).
    NOTE: stages must not block; they run on the event loop for every call.
    """

    def __init__(self, stages: Sequence[Stage]) -> None:
        self._inner_first: tuple[Callable, ...] = tuple(stage.apply for stage in reversed(stages))
        self._methods: dict[str, grpc.RpcMethodHandler] = {}
        self._generic: list[grpc.GenericRpcHandler] = []

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        """Register handlers that look methods up themselves (asked in order, after the registered methods)."""
        self._generic.extend(handlers)

    def add_registered_method_handlers(self, service: str, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        """Register `service`'s methods by name (what generated code calls alongside add_generic_rpc_handlers)."""
        self._methods.update({f"/{service}/{method}": handler for method, handler in handlers.items()})

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        handler = self._methods.get(handler_call_details.method)
        if handler is None:
            handler = self._lookup_generic(handler_call_details)
        for apply in self._inner_first:
            handler = apply(handler, handler_call_details)
        return handler

    def _lookup_generic(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        for generic in self._generic:
            handler = generic.service(handler_call_details)
            if handler is not None:
                return handler
        return None
