"""Batch-level and lifecycle metric families, each test on a fresh registry, fed by a real DynamicBatcher."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import pytest
from prometheus_client import CollectorRegistry

from service.errors import DeadlineExceeded, ResourceExhausted, Unavailable
from service.metrics import Metrics, row_buckets
from service.repository.servable import VersionState
from service.settings import MetricsSettings
from tests.unit.batching_fakes import (
    FakeModel,
    async_test,
    eventually,
    hold_worker,
    queued_then_released,
    rows,
    started,
)

pytestmark = pytest.mark.timeout(60)
LABELS = {"model": "m", "version": "3", "variant": "int8", "signature": "serving_default"}


def fresh(max_batch_rows: int = 8) -> tuple[Metrics, CollectorRegistry]:
    registry = CollectorRegistry()
    return Metrics(registry, MetricsSettings(), max_batch_rows), registry


def observer(metrics: Metrics, max_queue_rows: int = 6):
    return metrics.batch_observer("m", 3, "int8", "serving_default", max_queue_rows)


def test_row_buckets_are_powers_of_two_covering_the_max():
    assert row_buckets(1) == [1]
    assert row_buckets(48) == [1, 2, 4, 8, 16, 32, 64]


@async_test
async def test_batch_sizes_padding_waits_and_compute():
    metrics, registry = fresh()
    model = FakeModel()
    batcher = await started(model, observer(metrics), max_batch_size=8, allowed_batch_sizes=[4, 8],
                            batch_timeout_ms=0, max_queue_rows=6)
    await queued_then_released(model, batcher, [rows(1), rows(2, start=10)])
    await batcher.stop()
    value = registry.get_sample_value
    # The blocker ran alone (1 row, padded to 4), then the two queued requests together (3 rows, padded to 4).
    assert model.batch_rows == [4, 4]
    assert value("batchwise_batch_size_rows_count", LABELS) == 2
    assert value("batchwise_batch_size_rows_sum", LABELS) == 4
    assert value("batchwise_batch_size_rows_bucket", {**LABELS, "le": "1.0"}) == 1
    assert value("batchwise_batch_padding_rows_sum", LABELS) == 4
    assert value("batchwise_queue_wait_seconds_count", LABELS) == 3
    assert value("batchwise_compute_seconds_count", LABELS) == 2
    assert value("batchwise_queue_rows", LABELS) == 0
    assert value("batchwise_queue_capacity_rows", LABELS) == 6
    # Request series exist at zero before any request, for each gRPC door (the doors on by default),
    # so rate() works from the first scrape.
    for protocol in ("tfserving_grpc", "v2_grpc"):
        assert value("batchwise_request_latency_seconds_count", {**LABELS, "protocol": protocol}) == 0
        ok = {"model": "m", "version": "3", "variant": "int8", "code": "OK", "protocol": protocol}
        assert value("batchwise_predict_requests_total", ok) == 0
    assert value("batchwise_request_latency_seconds_count", {**LABELS, "protocol": "v2_rest"}) is None


def test_request_metrics_carry_the_protocol_of_their_door():
    metrics, registry = fresh()
    value = registry.get_sample_value
    labels = ("m", "3", "int8", "serving_default")
    for protocol, code in [("v2_rest", "OK"), ("v2_rest", "OK"), ("tfserving_rest", "NOT_FOUND"), ("v2_grpc", "OK")]:
        metrics.request_started()
        metrics.observe_request(protocol, labels, code, 0.01)
    metrics.predict_started()
    metrics.observe_predict(labels, "INVALID_ARGUMENT", 0.001)  # the TF Serving gRPC door's names
    served = {"model": "m", "version": "3", "variant": "int8"}
    assert value("batchwise_predict_requests_total", {**served, "code": "OK", "protocol": "v2_rest"}) == 2
    assert value("batchwise_predict_requests_total", {**served, "code": "NOT_FOUND", "protocol": "tfserving_rest"}) == 1
    assert value("batchwise_predict_requests_total",
                 {**served, "code": "INVALID_ARGUMENT", "protocol": "tfserving_grpc"}) == 1
    assert value("batchwise_request_latency_seconds_count", {**LABELS, "protocol": "v2_rest"}) == 2
    assert value("batchwise_request_latency_seconds_count", {**LABELS, "protocol": "v2_grpc"}) == 1
    assert value("batchwise_inflight_requests") == 0
    metrics.observe_http("v2_rest", "/v2/models/{model}/infer", 200, 0.002)
    metrics.observe_http("", "unknown", 404, None)
    assert value("batchwise_http_requests_total",
                 {"route": "/v2/models/{model}/infer", "code": "200", "protocol": "v2_rest"}) == 1
    assert value("batchwise_http_requests_total", {"route": "unknown", "code": "404", "protocol": ""}) == 1
    assert value("batchwise_http_request_duration_seconds_count",
                 {"route": "/v2/models/{model}/infer", "protocol": "v2_rest"}) == 1


@async_test
async def test_rejections_by_reason_and_queue_depth():
    metrics, registry = fresh()
    model = FakeModel()
    batcher = await started(model, observer(metrics), max_batch_size=8, max_queue_rows=6)
    blocker = await hold_worker(model, batcher)
    queued = asyncio.create_task(batcher.submit(rows(6)))
    await eventually(lambda: batcher.queue_rows == 6)
    assert registry.get_sample_value("batchwise_queue_rows", LABELS) == 6
    with pytest.raises(Unavailable):
        await batcher.submit(rows(1))  # queue full
    with pytest.raises(ResourceExhausted):
        await batcher.submit(rows(7))  # larger than the queue: invalid
    with pytest.raises(DeadlineExceeded):
        await batcher.submit(rows(1), deadline=time.monotonic() - 1)
    queued.cancel()
    await asyncio.gather(queued, return_exceptions=True)
    model.release()
    await blocker
    await batcher.stop()
    for reason in ("queue_full", "invalid", "deadline", "cancelled"):
        assert registry.get_sample_value("batchwise_rejections_total", {"model": "m", "reason": reason}) == 1
    assert registry.get_sample_value("batchwise_queue_rows", LABELS) == 0


@async_test
async def test_queue_depth_gauge_does_not_keep_a_stopped_batcher_alive():
    import gc
    import weakref

    metrics, registry = fresh()
    batcher = await started(FakeModel(), observer(metrics), max_batch_size=8)
    await batcher.submit(rows(2))
    await batcher.stop()
    gone = weakref.ref(batcher)
    del batcher
    gc.collect()
    assert gone() is None  # the gauge reads the queue through a weak reference
    assert registry.get_sample_value("batchwise_queue_rows", LABELS) == 0


def test_version_state_follows_the_lifecycle():
    metrics, registry = fresh()

    def state(version, variant, name):
        labels = {"model": "m", "version": str(version), "variant": variant, "state": name}
        return registry.get_sample_value("batchwise_model_version_state", labels)

    primary = SimpleNamespace(model="m", version=1, variant="", error=None, load_s=None, warmup_s=None)
    alternates = [SimpleNamespace(model="m", version=1, variant="", error=None, load_s=None, warmup_s=None)
                  for _ in range(2)]

    def move(servable, new_state, **changes):
        vars(servable).update(state=new_state, **changes)
        metrics.on_version_state(servable)

    move(primary, VersionState.LOADING)
    assert (state(1, "", "LOADING"), state(1, "", "AVAILABLE")) == (1, 0)
    move(primary, VersionState.AVAILABLE, variant="int8", load_s=0.5, warmup_s=0.1)
    assert state(1, "", "LOADING") is None  # the variant became known: the old series is gone
    assert (state(1, "int8", "AVAILABLE"), state(1, "int8", "LOADING")) == (1, 0)
    # Two alternates load at once (variant not yet known): counted, not overwritten.
    for alternate in alternates:
        move(alternate, VersionState.LOADING)
    assert state(1, "", "LOADING") == 2
    move(alternates[0], VersionState.END, error="bad file")
    assert (state(1, "", "LOADING"), state(1, "", "END")) == (1, 1)
    move(primary, VersionState.UNLOADING)
    move(primary, VersionState.END)
    assert state(1, "int8", "END") is None  # unloaded cleanly: no series left
    loads = {s.labels["outcome"]: s.value for s in registry.collect() for s in s.samples
             if s.name == "batchwise_model_loads_total"}
    assert loads == {"success": 1, "failure": 1}
    assert registry.get_sample_value("batchwise_model_load_seconds_sum", {"model": "m", "variant": "int8"}) == 0.5
