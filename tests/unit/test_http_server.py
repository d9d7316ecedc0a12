"""The HTTP server's listener and status table, without models: SO_REUSEPORT, routing, one status per code."""

from __future__ import annotations

import asyncio
import re

import orjson
import pytest
from aiohttp import ClientSession

from service.errors import ErrorCode, ServingError
from service.http.routes import Call, Reply, Route
from service.http.server import HttpServer
from service.http.status import HTTP_STATUS, http_error
from service.rpc.drain import CallTracker
from service.settings import HttpSettings, SecuritySettings
from tests.support.process import free_port


class EchoDoor:
    """A door answering its own name (and raising the domain error named in the path)."""

    protocol = "tfserving_rest"

    def __init__(self, name: str) -> None:
        self.name = name

    def routes(self) -> list[Route]:
        return [
            Route("GET", "/who", re.compile(r"/who"), self.who),
            Route("GET", "/fail/{code}", re.compile(r"/fail/(?P<code>[A-Z_]+)"), self.fail),
        ]

    async def who(self, call: Call) -> Reply:
        return Reply(orjson.dumps({"server": self.name}))

    async def fail(self, call: Call) -> Reply:
        error = ServingError("failing on purpose")
        error.code = ErrorCode[call.params["code"]]
        raise error


def test_every_domain_code_has_one_http_status():
    assert set(HTTP_STATUS) == set(ErrorCode)
    status, code, message = http_error(RuntimeError("secret detail"))
    assert (status, code) == (500, ErrorCode.INTERNAL) and "secret" not in message


def test_two_servers_share_a_port_with_reuse_port_and_map_errors_through_the_table():
    async def scenario() -> tuple[set[str], dict[str, int]]:
        settings = HttpSettings(port=free_port())
        servers = [
            HttpServer(settings, SecuritySettings(), [EchoDoor(n)], CallTracker(), reuse_port=True) for n in ("a", "b")
        ]
        ports = {await server.start() for server in servers}
        assert ports == {settings.port}
        try:
            async with ClientSession() as session:
                seen = set()
                for _ in range(40):  # new connections: the kernel spreads them over both listeners
                    async with session.get(
                        f"http://127.0.0.1:{settings.port}/who", headers={"Connection": "close"}
                    ) as reply:
                        seen.add((await reply.json())["server"])
                statuses = {}
                for code in ErrorCode:
                    async with session.get(f"http://127.0.0.1:{settings.port}/fail/{code.name}") as reply:
                        statuses[code.name] = reply.status
                        assert (await reply.json())["error"] == "failing on purpose"
        finally:
            for server in servers:
                await server.stop(1.0)
        return seen, statuses

    seen, statuses = asyncio.run(scenario())
    assert seen == {"a", "b"}
    assert statuses == {code.name: HTTP_STATUS[code] for code in ErrorCode}


def test_without_reuse_port_a_second_server_cannot_bind():
    async def scenario() -> None:
        settings = HttpSettings(port=free_port())
        first = HttpServer(settings, SecuritySettings(), [EchoDoor("a")], CallTracker())
        await first.start()
        try:
            with pytest.raises(OSError):
                await HttpServer(settings, SecuritySettings(), [EchoDoor("b")], CallTracker()).start()
        finally:
            await first.stop(1.0)

    asyncio.run(scenario())
