"""grpc.health.v1 for grpc.aio whose Watch streams end once shutdown begins, so that they never hold up a drain.

grpc_health's own aio servicer keeps Watch streams open forever; grpc.aio's `server.stop(grace)`
then waits the whole grace period for them and cuts them off with UNAVAILABLE. Here, entering
shutdown sends NOT_SERVING to every watcher and then ends its stream with OK.
"""

from __future__ import annotations

import asyncio

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
MAX_SERVICE_NAME_CHARS = 64


class HealthServicer(health_pb2_grpc.HealthServicer):
    """Check and Watch over a status per service name ("" is the whole server, NOT_SERVING at first).

    NOTE: every method must run on the server's event loop.
    """

    def __init__(self) -> None:
        self._status: dict[str, int] = {"": NOT_SERVING}
        self._changed = asyncio.Event()  # replaced after every change; watchers wait on the one they saw
        self._draining = False

    async def Check(self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext):
        status = self._status.get(request.service)
        if status is None:
            shown = request.service[:MAX_SERVICE_NAME_CHARS]
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {shown!r}")
        return health_pb2.HealthCheckResponse(status=status)

    async def Watch(self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext) -> None:
        """Send the status now and after every change; end (OK) after the status sent during shutdown."""
        last = None
        while True:
            # Read all three together (no await in between): a change during the write below sets
            # `changed`, so the loop comes round again and sends it before ending.
            status = self._status.get(request.service, SERVICE_UNKNOWN)
            changed, draining = self._changed, self._draining
            if status != last:
                await context.write(health_pb2.HealthCheckResponse(status=status))
                last = status
            if draining:
                return
            await changed.wait()

    async def set(self, service: str, status: int) -> None:
        """Set the status of `service`; ignored once shutdown has begun."""
        if self._draining:
            return
        self._status[service] = status
        self._notify()

    async def enter_graceful_shutdown(self) -> None:
        """Permanently set every service NOT_SERVING; open Watch streams send it and end."""
        if self._draining:
            return
        self._draining = True
        for service in self._status:
            self._status[service] = NOT_SERVING
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()
