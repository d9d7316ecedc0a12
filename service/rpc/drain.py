"""Admission of API calls for a graceful drain: counts them from acceptance to completion, refuses new ones.

Why refuse in the application instead of leaving it to grpc.aio's `server.stop(grace)`: calls that
reached the server but were not yet handed to a handler when `stop()` begins are cancelled by
gRPC core, so their clients see CANCELLED (not retryable) instead of UNAVAILABLE. Draining here
first answers every new call UNAVAILABLE while the accepted ones finish; health keeps answering
(NOT_SERVING), so probes see the drain instead of a dead port.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Literal

import grpc

from service.rpc.handlers import refusing_handler
from service.rpc.pipeline import StageInterceptor

INFRASTRUCTURE_PREFIX = "/grpc."  # health and reflection: not API calls
DRAINING_MESSAGE = "the server is shutting down and accepts no new calls; retry on another replica"
# After the accepted calls finish, keep refusing until no call has come for this long (counted
# from the moment they finished): a client whose call just finished often sends the next one at
# once, and if that one reached gRPC core just as the server stopped, core would cancel it
# (CANCELLED, not retryable) instead of it being refused (UNAVAILABLE).
QUIET_S = 0.25


class CallTracker(StageInterceptor):
    """Counts unary API calls and, once `start_draining()` is called, refuses new ones with UNAVAILABLE.

    "Accepted" means the call's handler started (before the drain began); "completed" that it
    returned a reply; "errored" that it ended with an error status (a client error, or auth);
    "cut off" that it was cancelled (client gone, or the grace period ran out); "refused" that it
    arrived during the drain. Health and reflection calls are neither counted nor refused.
    NOTE: handlers run on the server's event loop, so plain integers suffice.
    """

    def __init__(self) -> None:
        self.accepted = 0
        self.completed = 0
        self.errored = 0
        self.cut_off = 0
        self.refused = 0
        self._draining = False
        self._last_refused_s = float("-inf")
        self._idle = asyncio.Event()
        self._idle.set()
        self._cache: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def drain(self, deadline_s: float, quiet_s: float = QUIET_S) -> None:
        """Refuse new API calls with UNAVAILABLE from now on; return once the accepted ones have finished
        and no new call has come for `quiet_s`, or at `deadline_s` (a time.monotonic() value).
        """
        self._draining = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), max(0.0, deadline_s - time.monotonic()))
        idle_s = time.monotonic()  # the clients of the last calls may be about to send their next ones
        while (now := time.monotonic()) < deadline_s:
            quiet_at = max(self._last_refused_s, idle_s) + quiet_s
            if now >= quiet_at:
                return
            await asyncio.sleep(min(quiet_at, deadline_s) - now)

    @property
    def in_flight(self) -> int:
        return self.accepted - self.completed - self.errored - self.cut_off

    @property
    def draining(self) -> bool:
        """True once `drain()` began: new API calls are to be refused (any transport)."""
        return self._draining

    def refuse(self) -> None:
        """Count a call refused because the server is draining (the caller answers it UNAVAILABLE / 503)."""
        self.refused += 1
        self._last_refused_s = time.monotonic()

    def call_started(self) -> None:
        """Count an accepted API call in (any transport); pair with `call_finished`."""
        self.accepted += 1
        self._idle.clear()

    def call_finished(self, outcome: Literal["completed", "errored", "cut_off"]) -> None:
        """Count an accepted call out; wakes `drain()` when the last one leaves."""
        setattr(self, outcome, getattr(self, outcome) + 1)
        if self.in_flight == 0:
            self._idle.set()

    def summary(self) -> str:
        return (
            f"accepted={self.accepted} completed={self.completed} errored={self.errored} "
            f"cut_off={self.cut_off} refused={self.refused} in_flight={self.in_flight}"
        )

    def apply(self, handler: grpc.RpcMethodHandler | None, handler_call_details: grpc.HandlerCallDetails):
        """The tracked (or, while draining, refusing) handler for this call; a pipeline stage."""
        method = handler_call_details.method or ""
        if handler is None or method.startswith(INFRASTRUCTURE_PREFIX):
            return handler
        if handler.request_streaming or handler.response_streaming:
            return handler
        if self._draining:
            self.refuse()
            return refusing_handler(handler, grpc.StatusCode.UNAVAILABLE, DRAINING_MESSAGE)
        cached = self._cache.get(method)
        if cached is None or cached[0] is not handler:
            cached = (handler, self._tracked(handler))
            self._cache[method] = cached
        return cached[1]

    def _tracked(self, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        behaviour = handler.unary_unary

        async def tracked(request, context: grpc.aio.ServicerContext):
            self.call_started()
            outcome = "errored"
            try:
                reply = await behaviour(request, context)
                outcome = "completed"
            except asyncio.CancelledError:
                outcome = "cut_off"
                raise
            finally:
                self.call_finished(outcome)
            return reply

        return grpc.unary_unary_rpc_method_handler(
            tracked, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer
        )
