"""Every Prometheus metric the server exports, defined once, plus the /metrics HTTP endpoint.

Labels come only from a fixed, bounded set (model, version, variant, signature, method, route,
code, reason, state, outcome, protocol, input: a model's own input name); never from raw client
data: an unknown model is labelled model="".

Every request metric carries `protocol`, the door the request came through: one of PROTOCOLS
(tfserving_grpc, tfserving_rest, v2_grpc, v2_rest); gRPC calls that belong to no inference
protocol (health, reflection, unknown methods) have protocol="". A door records an inference
request with `request_started()` then `observe_request(protocol, labels, code, latency_s)`; the
gRPC interceptor records each call with `observe_rpc`, an HTTP server each exchange with
`observe_http`. `code` is always the canonical code name (OK, INVALID_ARGUMENT, NOT_FOUND, ...;
service.errors.ErrorCode names) so that one query covers every door; only observe_http's code is
the HTTP status.
"""

from __future__ import annotations

import threading
from collections import Counter as Tally
from collections.abc import Callable, Sequence
from typing import Protocol
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    start_http_server,
)

from service.batching.observer import BatchObserver, BatchTrigger, RejectReason
from service.settings import MetricsSettings

PREFIX = "batchwise_"
STATES = ("START", "LOADING", "AVAILABLE", "UNLOADING", "END")
REJECT_REASONS: tuple[RejectReason, ...] = ("queue_full", "deadline", "cancelled", "invalid", "slo")
BATCH_TRIGGERS: tuple[BatchTrigger, ...] = ("immediate", "full", "timeout", "drain")
LOAD_BUCKETS_S = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
UNKNOWN_METHOD = "unknown"
BATCH_LABELS = ("model", "version", "variant", "signature")
TFSERVING_GRPC = "tfserving_grpc"
TFSERVING_REST = "tfserving_rest"
V2_GRPC = "v2_grpc"
V2_REST = "v2_rest"
PROTOCOLS = (TFSERVING_GRPC, TFSERVING_REST, V2_GRPC, V2_REST)
NO_PROTOCOL = ""  # gRPC infrastructure calls: health, reflection, unknown methods


class VersionInfo(Protocol):
    """What the state listener reads from a model version (ServableVersion fits)."""

    model: str
    version: int
    variant: str
    error: str | None
    load_s: float | None
    warmup_s: float | None

    @property
    def state(self): ...  # an enum whose .name is one of STATES


def row_buckets(max_rows: int) -> list[float]:
    """1, 2, 4, ... up to the first power of two >= max_rows (batch sizes in rows)."""
    bounds = [1.0]
    while bounds[-1] < max_rows:
        bounds.append(bounds[-1] * 2)
    return bounds


def process_registry() -> CollectorRegistry:
    """A fresh registry carrying prometheus-client's process, platform and GC collectors.

    Also turns off prometheus-client's `*_created` series process-wide: Prometheus does not use
    them, and they would double the series count of every counter.
    """
    disable_created_metrics()
    registry = CollectorRegistry()
    for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
        registry.register(collector)
    return registry


class Metrics:
    """All metric families, registered in `registry` (tests pass a fresh CollectorRegistry).

    `max_batch_rows` sizes the row histograms' buckets. `protocols` are the doors that are on:
    each model signature's request series are created at zero for them (so rate() works from the
    first scrape); the others appear with their first request. The observe_* methods cache label
    children so the request path does a dict lookup, not a label validation.
    NOTE: observe_*, request_started and on_version_state run on the event loop thread.
    """

    def __init__(
        self, registry: CollectorRegistry, settings: MetricsSettings, max_batch_rows: int,
        protocols: Sequence[str] = (TFSERVING_GRPC, V2_GRPC), multiprocess: bool = False,
    ) -> None:
        self.registry = registry
        self._protocols = tuple(protocols)
        # In prometheus-client's multiprocess mode values live in files that the parent reads;
        # set_function gauges are not written there, so they are sampled by sample_gauges() instead.
        self.multiprocess = multiprocess
        self._sampled: dict[int, tuple[Gauge, Callable[[], int]]] = {}  # id(gauge child) ->
        family = _Families(registry)
        self._define_request_families(family, tuple(settings.latency_buckets_s))
        self._define_batch_families(family, tuple(settings.latency_buckets_s), row_buckets(max_batch_rows))
        self._define_model_families(family)
        self._inflight_count = 0
        self._watch(self.inflight, lambda: self._inflight_count)
        self._rpc_children: dict[tuple[str, str, str], tuple[object, object]] = {}
        self._http_children: dict[tuple[str, str, str], tuple[object, object]] = {}
        self._predict_children: dict[tuple[str, str, str, str, str], object] = {}
        self._ok_children: dict[tuple[tuple[str, str, str, str], str], tuple] = {}
        self._versions: dict[int, tuple[tuple[str, str, str], str]] = {}  # id(servable) -> labels, state

    def _define_request_families(self, family: _Families, latency: Sequence[float]) -> None:
        self.grpc_requests = family.counter("grpc_requests", "Finished gRPC calls by method and status code.",
                                            ("method", "code", "protocol"))
        self.grpc_duration = family.histogram("grpc_request_duration_seconds",
                                              "gRPC call duration (streams: lifetime).",
                                              ("method", "protocol"), latency)
        self.http_requests = family.counter("http_requests", "Finished HTTP requests by route and HTTP status.",
                                            ("route", "code", "protocol"))
        self.http_duration = family.histogram("http_request_duration_seconds", "HTTP request duration.",
                                              ("route", "protocol"), latency)
        self.predict_requests = family.counter(
            "predict_requests", "Finished inference calls (Predict, ModelInfer, REST predict/infer) by model and code.",
            ("model", "version", "variant", "code", "protocol"))
        self.request_latency = family.histogram(
            "request_latency_seconds", "Successful inference call latency, server side, from arrival to response.",
            (*BATCH_LABELS, "protocol"), latency)
        self.inflight = family.gauge("inflight_requests", "Inference calls being served (every door).", (), "livesum")

    def _define_batch_families(self, family: _Families, latency: Sequence[float], rows: Sequence[float]) -> None:
        self.queue_wait = family.histogram("queue_wait_seconds", "Time a request piece waited in the batch queue.",
                                           BATCH_LABELS, latency)
        self.compute = family.histogram("compute_seconds", "Model call duration per batch (merge, predict, split).",
                                        BATCH_LABELS, latency)
        self.batch_size = family.histogram("batch_size_rows", "Request rows per batch (without padding).",
                                           BATCH_LABELS, rows)
        self.batch_padding = family.histogram("batch_padding_rows", "Padding rows added per batch.",
                                              BATCH_LABELS, [0.0, *rows])
        self.queue_rows = family.gauge("queue_rows", "Rows waiting in the batch queue.", BATCH_LABELS, "livesum")
        self.queue_capacity = family.gauge("queue_capacity_rows", "Rows the batch queue holds (max_queue_rows).",
                                           BATCH_LABELS, "livesum")
        self.rejections = family.counter("rejections", "Requests the batcher refused or dropped before compute.",
                                         ("model", "reason"))
        self.batch_wait = family.gauge("batch_wait_seconds", "Wait the batch policy last chose after the oldest "
                                       "queued request (0 = runs at once).", BATCH_LABELS, "livemax")
        self.batch_cap = family.gauge("batch_cap_rows", "Batch-size cap the batch policy last chose.", BATCH_LABELS,
                                      "livemax")
        self.batch_triggers = family.counter("batches_formed", "Batches by why they ran: immediate (no wait), "
                                             "full, timeout (the wait ran out) or drain.", (*BATCH_LABELS, "trigger"))

    def _define_model_families(self, family: _Families) -> None:
        self.model_load = family.histogram("model_load_seconds", "Time to load (and check) a model variant.",
                                           ("model", "variant"), LOAD_BUCKETS_S)
        self.model_warmup = family.histogram("model_warmup_seconds", "Time to warm a loaded model variant up.",
                                             ("model", "variant"), LOAD_BUCKETS_S)
        self.model_loads = family.counter("model_loads", "Model version loads by outcome (success|failure).",
                                          ("model", "outcome"))
        self.version_state = family.gauge("model_version_state",
                                          "Model versions in each state (1 for the current state, else 0).",
                                          ("model", "version", "variant", "state"), "liveall")
        self.int8_clipped = family.counter(
            "int8_clipped_input_values",
            "Input values outside a full-integer variant's input quantization range (saturated: data drift).",
            ("model", "version", "input"),
        )

    def _watch(self, gauge, value: Callable[[], int]) -> None:
        """Let `gauge` show value(): read at scrape time, or by sample_gauges() in multiprocess mode."""
        if self.multiprocess:
            self._sampled[id(gauge)] = (gauge, value)
        else:
            gauge.set_function(value)

    def sample_gauges(self) -> None:
        """Multiprocess mode: copy every watched value into its gauge (the worker calls this periodically)."""
        for gauge, value in list(self._sampled.values()):
            gauge.set(value())

    # -- gRPC calls (the interceptor) --------------------------------------------------------

    def observe_rpc(self, method: str, code: str, duration_s: float | None, protocol: str = NO_PROTOCOL) -> None:
        """One finished gRPC call; `method` must be a registered method name (or UNKNOWN_METHOD)."""
        count, duration = self.rpc_children(method, code, protocol)
        count.inc()
        if duration_s is not None:
            duration.observe(duration_s)

    def rpc_children(self, method: str, code: str, protocol: str = NO_PROTOCOL) -> tuple:
        """(call counter, duration histogram) children for one method, code and protocol, resolved once."""
        key = (method, code, protocol)
        children = self._rpc_children.get(key)
        if children is None:
            children = (self.grpc_requests.labels(*key), self.grpc_duration.labels(method, protocol))
            self._rpc_children[key] = children
        return children

    # -- HTTP exchanges (the HTTP server) ----------------------------------------------------

    def observe_http(self, protocol: str, route: str, status: int, duration_s: float | None) -> None:
        """One finished HTTP exchange. `route` must be a fixed route template (e.g. "/v2/models/{model}/infer"),
        never the client's path; `protocol` one of PROTOCOLS, or NO_PROTOCOL for routes of none (e.g. 404s)."""
        key = (route, str(status), protocol)
        children = self._http_children.get(key)
        if children is None:
            children = (self.http_requests.labels(*key), self.http_duration.labels(route, protocol))
            self._http_children[key] = children
        children[0].inc()
        if duration_s is not None:
            children[1].observe(duration_s)

    # -- inference calls (every door: Predict, ModelInfer, REST predict and infer) ------------

    def request_started(self) -> None:
        """An inference call arrived (counts in batchwise_inflight_requests until observe_request)."""
        self._inflight_count += 1

    predict_started = request_started  # the name the TF Serving door has always used

    def observe_request(self, protocol: str, labels: tuple[str, str, str, str], code: str, latency_s: float) -> None:
        """An inference call that came through door `protocol` (one of PROTOCOLS) finished with `code`.

        `labels` are (model, version, variant, signature): model "" unless the model is served
        (never the client's raw string), version and variant "" unless a version was resolved.
        The latency is recorded only when code is OK (errors are counted, not timed, so fast
        rejections do not flatter the percentiles). Pairs with one earlier request_started().
        """
        if code == "OK":
            self.observe_request_ok(protocol, labels, latency_s)
            return
        self._inflight_count -= 1
        key = (*labels[:3], code, protocol)
        counter = self._predict_children.get(key)
        if counter is None:
            counter = self._predict_children[key] = self.predict_requests.labels(*key)
        counter.inc()

    def observe_request_ok(self, protocol: str, labels: tuple[str, str, str, str], latency_s: float) -> None:
        """A successful inference call (the common case: one cached lookup for its counter and latency children)."""
        self._inflight_count -= 1
        children = self._ok_children.get((labels, protocol))
        if children is None:
            children = self._ok_request_children(labels, protocol)
        children[0].inc()
        children[1].observe(latency_s)

    def _ok_request_children(self, labels: tuple[str, str, str, str], protocol: str) -> tuple:
        ok_key = (*labels[:3], "OK", protocol)
        counter = self._predict_children.get(ok_key) or self.predict_requests.labels(*ok_key)
        self._predict_children[ok_key] = counter
        children = self._ok_children[(labels, protocol)] = (counter, self.request_latency.labels(*labels, protocol))
        return children

    def observe_predict(self, labels: tuple[str, str, str, str], code: str, latency_s: float) -> None:
        """observe_request for the TF Serving gRPC door (its historical name)."""
        self.observe_request(TFSERVING_GRPC, labels, code, latency_s)

    def observe_predict_ok(self, labels: tuple[str, str, str, str], latency_s: float) -> None:
        """observe_request_ok for the TF Serving gRPC door (its historical name)."""
        self.observe_request_ok(TFSERVING_GRPC, labels, latency_s)

    # -- batches (one observer per batcher) ------------------------------------------------

    def batch_observer(self, model: str, version: int, variant: str, signature: str,
                       max_queue_rows: int) -> BatchObserver:
        """A BatchObserver for the batcher of one (model, version, variant, signature).

        Also creates that signature's request series at zero for each protocol that is on, so rate()
        works from the first scrape.
        """
        labels = (model, str(version), variant, signature)
        self.queue_capacity.labels(*labels).set(max_queue_rows)
        for protocol in self._protocols:
            if (labels, protocol) not in self._ok_children:
                self._ok_request_children(labels, protocol)
        return _BatchMetrics(self, labels)

    def count_clipped(self, model: str, version: int, input_name: str, count: int) -> None:
        """`count` values of `input_name` were clipped by an int8 variant's input quantization.

        NOTE: called from batch worker threads (prometheus-client counters are thread-safe).
        """
        self.int8_clipped.labels(model, str(version), input_name).inc(count)

    # -- model lifecycle (a ModelManager listener) -------------------------------------------

    def on_version_state(self, servable: VersionInfo) -> None:
        """Record a version's new state; on AVAILABLE its load and warm-up time; count loads.

        Versions unloaded cleanly drop their state series; failed ones stay at END=1.
        """
        key = id(servable)  # a reused id means the old object is gone: replacing its entry is right
        labels = (servable.model, str(servable.version), servable.variant)
        state = servable.state.name
        previous = self._versions.pop(key, None)
        if state != "END" or servable.error:
            self._versions[key] = (labels, state)
        for touched in {labels, previous[0] if previous else labels}:
            self._refresh_state(touched)
        if state == "AVAILABLE":
            self.model_loads.labels(servable.model, "success").inc()
            if servable.load_s is not None:
                self.model_load.labels(servable.model, servable.variant).observe(servable.load_s)
            if servable.warmup_s is not None:
                self.model_warmup.labels(servable.model, servable.variant).observe(servable.warmup_s)
        elif state == "END" and servable.error:
            self.model_loads.labels(servable.model, "failure").inc()

    def _refresh_state(self, labels: tuple[str, str, str]) -> None:
        counts = Tally(state for other, state in self._versions.values() if other == labels)
        for state in STATES:
            if counts or self.multiprocess:  # multiprocess files cannot drop a series: it goes to 0
                self.version_state.labels(*labels, state).set(counts[state])
            else:
                self.version_state.remove(*labels, state)


class _Families:
    """Makes prefixed metric families in one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def counter(self, name: str, doc: str, labels: Sequence[str]) -> Counter:
        return Counter(PREFIX + name, doc, labels, registry=self._registry)

    def histogram(self, name: str, doc: str, labels: Sequence[str], buckets: Sequence[float]) -> Histogram:
        return Histogram(PREFIX + name, doc, labels, registry=self._registry, buckets=buckets)

    def gauge(self, name: str, doc: str, labels: Sequence[str], multiprocess_mode: str = "livesum") -> Gauge:
        """A gauge; `multiprocess_mode` says how worker processes combine (docs/workers.md)."""
        return Gauge(PREFIX + name, doc, labels, registry=self._registry, multiprocess_mode=multiprocess_mode)


class _BatchMetrics(BatchObserver):
    """BatchObserver bound to one batcher's label children (resolved once, at construction)."""

    def __init__(self, metrics: Metrics, labels: tuple[str, str, str, str]) -> None:
        self._wait = metrics.queue_wait.labels(*labels)
        self._compute = metrics.compute.labels(*labels)
        self._rows = metrics.batch_size.labels(*labels)
        self._padding = metrics.batch_padding.labels(*labels)
        self._queue = metrics.queue_rows.labels(*labels)
        self._rejects = {reason: metrics.rejections.labels(labels[0], reason) for reason in REJECT_REASONS}
        self._plan_wait = metrics.batch_wait.labels(*labels)
        self._plan_cap = metrics.batch_cap.labels(*labels)
        self._triggers = {trigger: metrics.batch_triggers.labels(*labels, trigger) for trigger in BATCH_TRIGGERS}
        self._metrics = metrics

    def on_batch(self, rows: int, padding_rows: int, queue_wait_s: Sequence[float], compute_s: float) -> None:
        self._rows.observe(rows)
        self._padding.observe(padding_rows)
        self._compute.observe(compute_s)
        for wait_s in queue_wait_s:
            self._wait.observe(wait_s)

    def on_reject(self, reason: RejectReason) -> None:
        self._rejects[reason].inc()

    def on_plan(self, wait_s: float, cap_rows: int) -> None:
        self._plan_wait.set(wait_s)
        self._plan_cap.set(cap_rows)

    def on_trigger(self, trigger: BatchTrigger) -> None:
        self._triggers[trigger].inc()

    def watch_queue(self, rows: Callable[[], int]) -> None:
        self._metrics._watch(self._queue, rows)  # read at scrape time: nothing on the request path


class WorkerMetrics:
    """The supervising parent's own metrics (worker mode): restarts and workers ready, by worker slot."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.restarts = Counter(PREFIX + "worker_restarts", "Worker processes restarted after dying, by slot.",
                                ("worker",), registry=registry)
        self.ready = Gauge(PREFIX + "workers_ready", "Worker processes that report SERVING.", (), registry=registry)


def multiprocess_registry(path: str) -> CollectorRegistry:
    """A registry that aggregates every worker's metric files in `path` (prometheus-client multiprocess mode):
    counters and histograms sum, gauges combine by their multiprocess_mode."""
    from prometheus_client import multiprocess

    disable_created_metrics()
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=path)
    return registry


class MetricsEndpoint:
    """The /metrics HTTP server (prometheus-client's), on its own port and thread.

    `start()` binds settings.host:port (port 0 picks a free one) and returns the bound port; `stop()`
    shuts it down and joins its thread (blocking, up to the server's 0.5 s poll interval).
    Raises OSError if the port cannot be bound.
    """

    def __init__(self, registry: CollectorRegistry, settings: MetricsSettings) -> None:
        self._registry = registry
        self._host = settings.host
        self._port = settings.port
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> int:
        self._server, self._thread = start_http_server(self._port, addr=self._host, registry=self._registry)
        return self._server.server_address[1]

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)
        self._server = self._thread = None
