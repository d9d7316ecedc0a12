"""service.rpc.health: Watch streams report every change and end once shutdown begins."""

from __future__ import annotations

import asyncio

from grpc_health.v1 import health_pb2

from service.rpc.health import NOT_SERVING, SERVING, HealthServicer


class SlowWriteContext:
    """A servicer context whose writes wait until the test releases them."""

    def __init__(self) -> None:
        self.sent: list[int] = []
        self.release = asyncio.Event()

    async def write(self, reply: health_pb2.HealthCheckResponse) -> None:
        await self.release.wait()
        self.sent.append(reply.status)


def test_regression_shutdown_during_a_write_is_still_reported():
    """Shutdown that began while Watch was writing ended the stream without sending NOT_SERVING."""

    async def scenario() -> list[int]:
        health = HealthServicer()
        await health.set("", SERVING)
        context = SlowWriteContext()
        watch = asyncio.ensure_future(health.Watch(health_pb2.HealthCheckRequest(), context))
        await asyncio.sleep(0)  # Watch is now inside its first write
        await health.enter_graceful_shutdown()
        context.release.set()
        await asyncio.wait_for(watch, 5)  # and it ends by itself
        return context.sent

    assert asyncio.run(scenario()) == [SERVING, NOT_SERVING]


def test_watch_follows_changes_and_set_is_ignored_after_shutdown():
    async def scenario() -> tuple[list[int], int]:
        health = HealthServicer()
        context = SlowWriteContext()
        context.release.set()
        watch = asyncio.ensure_future(health.Watch(health_pb2.HealthCheckRequest(service="m"), context))
        await asyncio.sleep(0)
        await health.set("m", SERVING)
        await asyncio.sleep(0)
        await health.enter_graceful_shutdown()
        await asyncio.wait_for(watch, 5)
        await health.set("m", SERVING)
        return context.sent, (await health.Check(health_pb2.HealthCheckRequest(service="m"), context)).status

    sent, final = asyncio.run(scenario())
    assert sent == [health_pb2.HealthCheckResponse.SERVICE_UNKNOWN, SERVING, NOT_SERVING]
    assert final == NOT_SERVING
