"""The framework ceiling: our gRPC server stack answering Predict with a fixed, precomputed response and no model.

Same grpc.aio server, event loop (service.eventloop), options (service.rpc.options) and concurrency
cap as `python -m service`, and the request is parsed into a PredictRequest as ours is; the response
is the cached bytes of a real PredictResponse, so the only work left out is the model and our own
code in between.
Run it in its own process: `python -m loadtests.fixed_server --port P --response-file F`.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path
from typing import get_args

import grpc

from service import eventloop
from service.api import predict_pb2
from service.rpc.options import grpc_server_options
from service.settings import EventLoop, ServerSettings

SERVICE = "tensorflow.serving.PredictionService"


def build_server(response: bytes, settings: ServerSettings, parse_request: bool = True) -> grpc.aio.Server:
    """A grpc.aio server whose Predict returns `response` (bytes) for any request; not started."""

    async def predict(request, context) -> bytes:
        return response

    handler = grpc.unary_unary_rpc_method_handler(
        predict, request_deserializer=predict_pb2.PredictRequest.FromString if parse_request else None
    )
    server = grpc.aio.server(
        options=grpc_server_options(settings), maximum_concurrent_rpcs=settings.max_concurrent_rpcs
    )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {"Predict": handler}),))
    return server


async def serve(port: int, response: bytes, parse_request: bool) -> None:
    settings = ServerSettings(host="127.0.0.1", port=port)
    server = build_server(response, settings, parse_request)
    bound = server.add_insecure_port(f"{settings.host}:{port}")
    await server.start()
    print(f"fixed server on 127.0.0.1:{bound}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(1.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.fixed_server", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--response-file", type=Path, required=True, help="serialized PredictResponse bytes")
    parser.add_argument("--no-parse", action="store_true", help="do not parse the request (raw bytes in)")
    parser.add_argument("--event-loop", choices=get_args(EventLoop), default="auto",
                        help="as our server's server.event_loop (default auto: uvloop if installed)")
    args = parser.parse_args(argv)
    eventloop.run(serve(args.port, args.response_file.read_bytes(), not args.no_parse), args.event_loop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
