"""StagePipeline: our interceptors in one hop, in the same order as separate grpc.aio interceptors."""

from __future__ import annotations

import asyncio

import grpc

from service.rpc.pipeline import StagePipeline


class Tagging:
    """A stage that records that it ran and wraps the handler's behaviour with its tag."""

    def __init__(self, tag: str, seen: list[str]) -> None:
        self.tag, self.seen = tag, seen

    def apply(self, handler, details):
        self.seen.append(self.tag)
        inner = handler.unary_unary

        async def behaviour(request, context):
            return f"{self.tag}({await inner(request, context)})"

        return grpc.unary_unary_rpc_method_handler(behaviour)


class Details:
    method = "/pkg.Service/Method"
    invocation_metadata = ()


async def _call(pipeline: StagePipeline) -> str:
    async def lookup(details):
        async def model(request, context):
            return "model"

        return grpc.unary_unary_rpc_method_handler(model)

    handler = await pipeline.intercept_service(lookup, Details())
    return await handler.unary_unary(None, None)


def test_outermost_stage_wraps_last_as_in_a_grpc_interceptor_chain():
    seen: list[str] = []
    pipeline = StagePipeline([Tagging("outer", seen), Tagging("middle", seen), Tagging("inner", seen)])
    assert asyncio.run(_call(pipeline)) == "outer(middle(inner(model)))"
    assert seen == ["inner", "middle", "outer"]


def test_an_unknown_method_reaches_every_stage_as_none():
    seen: list[object] = []

    class Recording:
        def apply(self, handler, details):
            seen.append(handler)
            return handler

    async def lookup(details):
        return None

    pipeline = StagePipeline([Recording(), Recording()])
    assert asyncio.run(pipeline.intercept_service(lookup, Details())) is None
    assert seen == [None, None]
