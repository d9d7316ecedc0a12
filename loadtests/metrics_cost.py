"""The CPU cost per Predict of everything metrics add to the request path, timed in-process.

Runs the real pieces with a fresh registry: the ObservabilityInterceptor around a handler that
returns at once (minus the same handler without it), Metrics.predict_started/observe_predict,
and a batcher's observer (one on_batch per 32 requests; the queue depth is read at scrape time).
Prints one JSON line: microseconds per request for each part and in total. Deterministic enough
to set beside the noisy on/off throughput ratio: the total over the server's measured CPU per
request is the share of the server's work that metrics cost.
Usage: python -m loadtests.metrics_cost [--requests N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

import grpc
from prometheus_client import CollectorRegistry

from service.batching.observer import GuardedObserver
from service.metrics import Metrics
from service.rpc.interceptors import ObservabilityInterceptor
from service.settings import MetricsSettings

METHOD = "/tensorflow.serving.PredictionService/Predict"
LABELS = ("model", "1", "savedmodel", "serving_default")
BATCH = 32


class _Context:
    """The two ServicerContext calls the interceptor makes on a successful call."""

    def code(self) -> None:
        return None

    def peer(self) -> str:
        return "ipv4:127.0.0.1:1"


class _Details:
    method = METHOD
    invocation_metadata = (("user-agent", "grpc-python"),)


async def _interceptor_us(metrics: Metrics, requests: int) -> float:
    """Per call: the intercepted path minus the bare one."""

    async def behaviour(request, context):
        return request

    handler = grpc.unary_unary_rpc_method_handler(behaviour)
    interceptor, context = ObservabilityInterceptor(metrics, 0.0), _Context()

    async def continuation(details):
        return handler

    async def intercepted() -> None:
        await (await interceptor.intercept_service(continuation, _Details)).unary_unary(None, context)

    async def bare() -> None:
        await (await continuation(_Details)).unary_unary(None, context)

    timings = {}
    for name, call in (("bare", bare), ("intercepted", intercepted), ("bare", bare), ("intercepted", intercepted)):
        started = time.perf_counter()
        for _ in range(requests):
            await call()
        timings[name] = (time.perf_counter() - started) / requests
    return max(0.0, timings["intercepted"] - timings["bare"]) * 1e6


def _per_request_us(fn, requests: int) -> float:
    started = time.perf_counter()
    for _ in range(requests):
        fn()
    return (time.perf_counter() - started) / requests * 1e6


def measure(requests: int) -> dict:
    """Microseconds per request for each part of the metrics hot path, and their sum."""
    metrics = Metrics(CollectorRegistry(), MetricsSettings(), BATCH * 2)
    observer = GuardedObserver(metrics.batch_observer(*LABELS[:1], 1, *LABELS[2:], 4096))
    waits = [0.001] * BATCH

    def predict() -> None:
        metrics.predict_started()
        metrics.observe_predict(LABELS, "OK", 0.004)

    parts = {
        "interceptor_us": asyncio.run(_interceptor_us(metrics, requests)),
        "predict_us": _per_request_us(predict, requests),
        "batch_us": _per_request_us(lambda: observer.on_batch(BATCH, 0, waits, 0.003), requests // BATCH) / BATCH,
    }
    return {**{k: round(v, 3) for k, v in parts.items()}, "total_us": round(sum(parts.values()), 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.metrics_cost", description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=50_000)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.requests)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
