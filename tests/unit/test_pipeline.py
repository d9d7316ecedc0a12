"""StagedHandlers: our interceptors as stages of the method lookup, ordered as separate grpc.aio interceptors."""

from __future__ import annotations

import asyncio

import grpc

from service.rpc.pipeline import StagedHandlers

METHOD = "/pkg.Service/Method"


class Tagging:
    """A stage that records that it ran and wraps the handler's behaviour with its tag."""

    def __init__(self, tag: str, seen: list[str]) -> None:
        self.tag, self.seen = tag, seen

    def apply(self, handler, details):
        self.seen.append(self.tag)
        if handler is None:
            return None
        inner = handler.unary_unary

        async def behaviour(request, context):
            return f"{self.tag}({await inner(request, context)})"

        return grpc.unary_unary_rpc_method_handler(behaviour)


class Details:
    def __init__(self, method: str = METHOD) -> None:
        self.method = method
        self.invocation_metadata = ()


async def model(request, context):
    return "model"


def test_outermost_stage_wraps_last_as_in_a_grpc_interceptor_chain():
    seen: list[str] = []
    handlers = StagedHandlers([Tagging("outer", seen), Tagging("middle", seen), Tagging("inner", seen)])
    handlers.add_registered_method_handlers("pkg.Service", {"Method": grpc.unary_unary_rpc_method_handler(model)})
    handler = handlers.service(Details())
    assert asyncio.run(handler.unary_unary(None, None)) == "outer(middle(inner(model)))"
    assert seen == ["inner", "middle", "outer"]


def test_an_unknown_method_reaches_every_stage_as_none():
    seen: list[object] = []

    class Recording:
        def apply(self, handler, details):
            seen.append(handler)
            return handler

    handlers = StagedHandlers([Recording(), Recording()])
    handlers.add_registered_method_handlers("pkg.Service", {"Method": grpc.unary_unary_rpc_method_handler(model)})
    assert handlers.service(Details("/pkg.Service/Other")) is None
    assert seen == [None, None]


def test_generic_handlers_answer_what_is_not_registered_by_name():
    generic = grpc.method_handlers_generic_handler("pkg.Generic", {"Call": grpc.unary_unary_rpc_method_handler(model)})
    handlers = StagedHandlers([])
    handlers.add_generic_rpc_handlers((generic,))
    assert handlers.service(Details("/pkg.Generic/Call")).unary_unary is model
    assert handlers.service(Details("/pkg.Generic/Nope")) is None


def test_a_real_grpc_aio_server_serves_through_the_stages():
    """Registered like a servicer on a grpc.aio server, called over loopback by a real client."""
    seen: list[str] = []

    async def scenario() -> str:
        handlers = StagedHandlers([Tagging("stage", seen)])
        handlers.add_registered_method_handlers("pkg.Service", {
            "Method": grpc.unary_unary_rpc_method_handler(
                model, request_deserializer=bytes, response_serializer=str.encode
            )
        })
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((handlers,))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                reply = await channel.unary_unary(METHOD)(b"")
                try:
                    await channel.unary_unary("/pkg.Service/Missing")(b"")
                except grpc.aio.AioRpcError as exc:
                    assert exc.code() == grpc.StatusCode.UNIMPLEMENTED
                return reply.decode()
        finally:
            await server.stop(None)

    assert asyncio.run(scenario()) == "stage(model)"
    assert seen == ["stage", "stage"]  # the unknown method went through the stage too (as None)
