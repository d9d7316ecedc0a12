"""The HTTP server: one aiohttp low-level server on the server's own event loop, wrapping every door alike.

Each request goes through the same steps, whatever the door: route -> drain admission -> bearer
token -> the door's handler (which decodes to numpy and calls the DataPlane) -> status mapping
(service/http/status.py) -> metrics. Bodies are read by the handler through `Call.read_body`,
which refuses an oversized Content-Length before reading anything.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from functools import partial
from typing import Protocol

import orjson
from aiohttp import web

from service.errors import DeadlineExceeded
from service.http.body import parse_json, read_body
from service.http.routes import Call, Reply, Route
from service.http.status import http_error
from service.http.tls import server_ssl_context
from service.rpc.headers import VARIANT_HEADER
from service.settings import HttpSettings, SecuritySettings
from service.tokens import TokenVerifier, load_tokens

log = logging.getLogger(__name__)
DRAINING_MESSAGE = "the server is shutting down and accepts no new requests; retry on another replica"


class Admission(Protocol):
    """The drain's call accounting (service.rpc.drain.CallTracker fits)."""

    @property
    def draining(self) -> bool: ...
    def refuse(self) -> None: ...
    def call_started(self) -> None: ...
    def call_finished(self, outcome: str) -> None: ...


class RequestObserver(Protocol):
    """Where requests are recorded (service.http.observe.HttpMetrics fits)."""

    def request_started(self, protocol: str, predict: bool) -> None: ...
    def request_finished(self, protocol: str, route: Route, reply: Reply, *, code: str, duration_s: float) -> None: ...
    def answered(self, protocol: str, route: str, status: int) -> None: ...


class Door(Protocol):
    """A protocol served over HTTP: its metrics label and its routes."""

    protocol: str

    def routes(self) -> Sequence[Route]: ...


class HttpServer:
    """Serves `doors` on settings.host:port; `start()` binds and returns the bound port, `stop()` closes.

    `calls` is shared with the gRPC port, so one drain covers both; `observer` may be None (metrics off).
    `reuse_port` binds with SO_REUSEPORT, so that several processes can share the port.
    NOTE: everything runs on the event loop that calls `start()`.
    """

    def __init__(
        self,
        settings: HttpSettings,
        security: SecuritySettings,
        doors: Sequence[Door],
        calls: Admission,
        observer: RequestObserver | None = None,
        *,
        reuse_port: bool = False,
    ) -> None:
        self._settings = settings
        self._security = security
        self._routes = [(door.protocol, route) for door in doors for route in door.routes()]
        self._calls = calls
        self._observer = observer
        self._reuse_port = reuse_port
        self._verifier = TokenVerifier(load_tokens(security)) if security.auth_enabled else None
        self._parse = partial(_parse, settings)
        self._web: web.Server | None = None
        self._listener: asyncio.AbstractServer | None = None
        self.port: int | None = None

    async def start(self) -> int:
        """Bind and serve; returns the bound port. Raises OSError if the port cannot be bound."""
        # auto_decompress off: the body limit holds for the bytes sent (read_body refuses Content-Encoding).
        self._web = web.Server(self._handle, access_log=None, auto_decompress=False)
        ssl_context = server_ssl_context(self._security)
        loop = asyncio.get_running_loop()
        self._listener = await loop.create_server(
            self._web,
            self._settings.host,
            self._settings.port,
            ssl=ssl_context,
            reuse_port=self._reuse_port or None,
        )
        self.port = self._listener.sockets[0].getsockname()[1]
        log.info("HTTP listening on %s:%s (%s)", self._settings.host, self.port, "TLS" if ssl_context else "plaintext")
        return self.port

    async def stop(self, grace_s: float) -> None:
        """Stop accepting connections, let requests in progress finish for up to `grace_s`, close the rest.

        Idle keep-alive connections (every HTTP client's pool holds some) close at once, and busy ones
        after their response: otherwise each would hold the stop for the whole `grace_s`.
        """
        if self._listener is not None:
            self._listener.close()
        if self._web is not None:
            self._web.pre_shutdown()
            await self._web.shutdown(max(grace_s, 0.0))

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        started_s = time.perf_counter()
        found = self._route(request)
        if isinstance(found, web.Response):
            if self._observer is not None:
                self._observer.answered("", "unknown", found.status)
            return found
        protocol, route, params = found
        if not route.open and self._calls.draining:
            self._calls.refuse()
            if self._observer is not None:
                self._observer.answered(protocol, route.template, 503)
            return _error_response(503, DRAINING_MESSAGE, close=True)
        call = Call(
            request,
            params,
            request.headers.get(VARIANT_HEADER),
            partial(read_body, request, self._settings.max_body_bytes),
            self._parse,
        )
        if route.open:
            reply = (await self._reply(route, call))[0]
            if self._observer is not None:
                self._observer.answered(protocol, route.template, reply.status)
            return _response(reply)
        return _response(await self._counted(protocol, route, call, started_s))

    async def _counted(self, protocol: str, route: Route, call: Call, started_s: float) -> Reply:
        """The reply to an API call, counted in the drain accounting and the metrics (cancelled ones too)."""
        self._calls.call_started()
        if self._observer is not None:
            self._observer.request_started(protocol, route.predict)
        reply, code = Reply(b"", 499), "CANCELLED"
        try:
            reply, code = await self._reply(route, call)
        finally:
            self._calls.call_finished({"OK": "completed", "CANCELLED": "cut_off"}.get(code, "errored"))
            if self._observer is not None:
                if reply.labels is None:
                    reply.labels = (call.model or "", "", "", "")
                duration_s = time.perf_counter() - started_s
                self._observer.request_finished(protocol, route, reply, code=code, duration_s=duration_s)
        return reply

    async def _reply(self, route: Route, call: Call) -> tuple[Reply, str]:
        """The handler's reply, or the error reply its exception maps to; with the domain code (or "OK")."""
        try:
            if self._verifier is not None and not route.open:
                problem = self._verifier.problem(call.request.headers.get("Authorization"), "header")
                if problem is not None:
                    return Reply(_error_body(problem), 401, headers={"WWW-Authenticate": "Bearer"}), "UNAUTHENTICATED"
            return await self._within_timeout(route, call), "OK"
        except Exception as exc:
            status, code, message = http_error(exc)
            return Reply(_error_body(message), status), code.name

    async def _within_timeout(self, route: Route, call: Call) -> Reply:
        """The handler's reply; DeadlineExceeded (504) once http.request_timeout_ms has passed. A
        request still queued then leaves the queue; one whose batch runs is computed and discarded."""
        timeout_ms = self._settings.request_timeout_ms
        if route.open or not timeout_ms:
            return await route.handler(call)
        window = asyncio.timeout(timeout_ms / 1000)
        try:
            async with window:
                return await route.handler(call)
        except TimeoutError:
            if not window.expired():
                raise
            raise DeadlineExceeded(
                f"the request took longer than http.request_timeout_ms={timeout_ms:g} and was abandoned; "
                "retry later or with a smaller request"
            ) from None

    def _route(self, request: web.BaseRequest) -> tuple[str, Route, dict[str, str]] | web.Response:
        path, allowed = request.path, []
        for protocol, route in self._routes:
            match = route.pattern.fullmatch(path)
            if match is None:
                continue
            if route.method == request.method:
                return protocol, route, match.groupdict()
            allowed.append(route.method)
        if allowed:
            return _error_response(
                405,
                f"{request.method} is not allowed on {path[:200]}; use {', '.join(allowed)}",
                headers={"Allow": ", ".join(allowed)},
            )
        return _error_response(
            404,
            f"no API at {path[:200]}: see docs/protocols.md for the TF Serving REST "
            "(/v1/models/...) and v2 (/v2/...) paths",
        )


def _parse(settings: HttpSettings, raw: bytes, what: str, non_finite: bool = False):
    return parse_json(raw, settings.max_json_depth, settings.max_json_elements, what, non_finite=non_finite)


def _error_body(message: str) -> bytes:
    return orjson.dumps({"error": message})


# Not aiohttp's default Server header, which names the Python and aiohttp versions to anyone who asks.
_SERVER_HEADER = {"Server": "batchwise"}


def _error_response(
    status: int, message: str, *, close: bool = False, headers: dict[str, str] | None = None
) -> web.Response:
    headers = {**_SERVER_HEADER, **(headers or {})}
    response = web.Response(body=_error_body(message), status=status, content_type="application/json", headers=headers)
    if close:
        response.force_close()
    return response


def _response(reply: Reply) -> web.Response:
    headers = {**_SERVER_HEADER, **reply.headers}
    return web.Response(body=reply.body, status=reply.status, content_type=reply.content_type, headers=headers)
