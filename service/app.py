"""Composition root: builds the manager, batchers, servicers and gRPC server; runs and drains them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc
from prometheus_client import CollectorRegistry

from service.api import (
    grpc_service_pb2,
    grpc_service_pb2_grpc,
    model_service_pb2,
    model_service_pb2_grpc,
    prediction_service_pb2,
    prediction_service_pb2_grpc,
)
from service.api._pool import POOL
from service.batching import DynamicBatcher
from service.dataplane import DataPlane
from service.heap import settle_heap
from service.http.observe import HttpMetrics
from service.http.server import HttpServer
from service.http.tfserving import TFServingRestDoor
from service.http.v2 import V2RestDoor
from service.metrics import (
    TFSERVING_GRPC,
    TFSERVING_REST,
    V2_GRPC,
    V2_REST,
    Metrics,
    MetricsEndpoint,
    process_registry,
)
from service.repository.loader import VariantLoader
from service.repository.manager import ModelManager
from service.repository.servable import ServableVersion, VersionState
from service.rpc.auth import TokenAuthInterceptor, load_tokens
from service.rpc.drain import CallTracker
from service.rpc.handlers import MalformedRequestInterceptor
from service.rpc.health import HealthServicer
from service.rpc.health_listener import build_health_server
from service.rpc.interceptors import ObservabilityInterceptor
from service.rpc.model_servicer import ModelServicer
from service.rpc.options import grpc_server_options
from service.rpc.pipeline import Stage, StagedHandlers
from service.rpc.prediction_servicer import PredictionServicer
from service.rpc.tls import server_credentials
from service.rpc.v2.servicer import InferenceServicer
from service.runtime.base import SignatureSpec
from service.settings import Settings
from service.workers.readiness import WorkerRole

log = logging.getLogger(__name__)
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
LIVENESS_SERVICE = "liveness"  # SERVING while the process runs; for liveness probes (readiness uses "")
SERVICE_NAMES = (
    prediction_service_pb2.DESCRIPTOR.services_by_name["PredictionService"].full_name,
    model_service_pb2.DESCRIPTOR.services_by_name["ModelService"].full_name,
    grpc_service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name,
    health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
    reflection.SERVICE_NAME,
)


class BatchwiseServer:
    """The whole server. The constructor is cheap; `start()` binds, loads models and serves.

    Health is NOT_SERVING until the first repository scan has loaded its versions; then the
    overall service and each model name are SERVING while a version of it is available.
    With metrics enabled, /metrics is served on settings.metrics.host:port (bound port in
    `metrics_port`) from `registry` (default: a new registry with the process collectors);
    with metrics disabled there is no endpoint, no metric recording and (unless access logs
    are sampled) no interceptor.
    """

    def __init__(
        self, settings: Settings, registry: CollectorRegistry | None = None, worker: WorkerRole | None = None
    ) -> None:
        self.settings = settings
        self.worker = worker  # set when this process is one worker of several (service/workers)
        self.port: int | None = None
        self.metrics_port: int | None = None
        self.http_port: int | None = None  # None while the HTTP port is off (settings.http.enabled)
        self.health_port: int | None = None  # the plaintext health-only port, when server.health_port is set
        self.health = HealthServicer()
        self.metrics = _build_metrics(settings, registry, worker is not None) if settings.metrics.enabled else None
        listeners = [self._on_state] + ([self.metrics.on_version_state] if self.metrics else [])
        clipped = self.metrics.count_clipped if self.metrics else None
        loader = VariantLoader(settings, clipped, worker.index if worker else None)
        self.manager = ModelManager(settings, loader, self._build_batcher, listeners)
        self._endpoint: MetricsEndpoint | None = None
        self.dataplane = DataPlane(self.manager, settings)
        self.calls = CallTracker()
        self._server: grpc.aio.Server | None = None
        self._http: HttpServer | None = None
        self._health_server: grpc.aio.Server | None = None
        self._poller: asyncio.Task | None = None
        self._stopping = False

    async def start(self) -> int:
        """Bind the ports, load the repository, serve; return the bound gRPC port.

        A single server listens first, so probes see NOT_SERVING while models load. A worker loads
        first: the kernel hands a listening worker its share of new connections at once, and a
        restarted worker that is still loading would fail every call on them while its siblings
        could have served them.
        """
        await self.health.set("", NOT_SERVING)
        await self.health.set(LIVENESS_SERVICE, SERVING)
        if self.metrics is not None and self.worker is None:  # with workers, the supervisor serves /metrics
            self._endpoint = MetricsEndpoint(self.metrics.registry, self.settings.metrics)
            self.metrics_port = self._endpoint.start()
            log.info("metrics on http://%s:%s/metrics", self.settings.metrics.host, self.metrics_port)
        if self.worker is None:
            await self._listen()
        await self.manager.reconcile(wait=True)
        settle_heap()  # freeze the loaded heap so full GC passes stop pausing the event loop under load
        if self.worker is not None:
            await self._listen()
        await self.refresh_health()
        self._poller = asyncio.get_running_loop().create_task(self.manager.poll_forever())
        return self.port

    async def _listen(self) -> None:
        """Start the gRPC server, then the HTTP port and the health-only listener when they are on."""
        self._server = self._build_grpc_server()
        await self._server.start()
        loop = type(asyncio.get_running_loop())
        log.info("gRPC listening on %s:%s (event loop %s.%s)", self.settings.server.host, self.port,
                 loop.__module__, loop.__name__)
        if self.settings.http.enabled:
            self._http = self._build_http_server(reuse_port=self.settings.server.reuse_port)
            self.http_port = await self._http.start()
        await self._start_health_listener()

    async def stop(self, grace_s: float | None = None) -> None:
        """Graceful drain: health NOT_SERVING, refuse new calls, let in-flight ones finish, unload."""
        if self._stopping:
            return
        self._stopping = True
        grace = self.settings.server.grace_period_s if grace_s is None else grace_s
        log.info("stopping: draining %d in-flight calls for up to %.1fs", self.calls.in_flight, grace)
        deadline_s = time.monotonic() + grace
        if self.worker is not None:
            self.worker.report(False)
        await self.health.enter_graceful_shutdown()
        if self._poller is not None:
            self._poller.cancel()
        await self.calls.drain(deadline_s)  # new API calls: UNAVAILABLE; health answers NOT_SERVING
        remaining_s = max(0.0, deadline_s - time.monotonic())
        closing = [self._server.stop(remaining_s)] if self._server is not None else []
        closing += [self._http.stop(remaining_s)] if self._http is not None else []
        await asyncio.gather(*closing)
        if self._health_server is not None:  # after the drain: probes saw NOT_SERVING throughout it
            await self._health_server.stop(0)
        await self.manager.stop()
        if self._endpoint is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._endpoint.stop)
        log.info("stopped; API calls since start: %s", self.calls.summary())

    def is_ready(self) -> bool:
        """Ready for inference: the first repository scan is done, no drain has begun, and a model is AVAILABLE.

        The same rule as the gRPC health service's overall status, for the v2 doors' readiness calls.
        """
        if self._poller is None or self._stopping:
            return False
        return any(self.manager.is_available(name) for name in self.manager.model_names())

    async def wait_for_termination(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()

    async def _start_health_listener(self) -> None:
        """Serve grpc.health.v1 alone in plaintext on server.health_port, if set (probes with TLS on)."""
        cfg = self.settings.server
        if cfg.health_port is None:
            return
        self._health_server, self.health_port = build_health_server(
            self.health, cfg.host, cfg.health_port, cfg.reuse_port
        )
        await self._health_server.start()
        log.info("plaintext health-only gRPC listener on %s:%s", cfg.host, self.health_port)

    def _build_grpc_server(self) -> grpc.aio.Server:
        cfg = self.settings.server
        server = grpc.aio.server(options=grpc_server_options(cfg), maximum_concurrent_rpcs=cfg.max_concurrent_rpcs)
        handlers = StagedHandlers(self._interceptors())  # our interceptors run inside the method lookup
        servicer = PredictionServicer(
            self.dataplane, max_tensor_elements=cfg.max_tensor_elements, max_string_bytes=cfg.max_message_bytes,
            metrics=self.metrics,
        )
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(servicer, handlers)
        model_servicer = ModelServicer(self.manager, model_control_enabled=cfg.enable_model_control)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(model_servicer, handlers)
        inference_servicer = InferenceServicer(
            self.dataplane, self.is_ready, max_tensor_elements=cfg.max_tensor_elements, metrics=self.metrics
        )
        grpc_service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(inference_servicer, handlers)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, handlers)
        # (enable_server_reflection picks the async servicer only for a grpc.aio.Server: register it ourselves)
        reflection_pb2_grpc.add_ServerReflectionServicer_to_server(
            reflection.aio.ReflectionServicer(SERVICE_NAMES, pool=_reflection_pool()), handlers
        )
        server.add_generic_rpc_handlers((handlers,))
        credentials = server_credentials(self.settings.security)
        address = f"{cfg.host}:{cfg.port}"
        self.port = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
        return server

    def _build_http_server(self, reuse_port: bool = False) -> HttpServer:
        """TF Serving REST and v2 REST on settings.http, sharing the drain accounting and metrics with gRPC."""
        v2 = V2RestDoor(self.dataplane, self.is_ready, max_tensor_elements=self.settings.server.max_tensor_elements)
        doors = [TFServingRestDoor(self.dataplane), v2]
        observer = HttpMetrics(self.metrics, self.dataplane.is_served) if self.metrics is not None else None
        return HttpServer(self.settings.http, self.settings.security, doors, self.calls, observer,
                          reuse_port=reuse_port)

    def _interceptors(self) -> list[Stage]:
        """Outermost first: metrics and access logs (so refusals are counted too), call accounting,
        bearer-token auth (refuses before parsing), malformed messages. Run as StagedHandlers' stages."""
        interceptors: list[Stage] = []
        sample_rate = self.settings.logging.access_log_sample_rate
        if self.metrics is not None or sample_rate:
            interceptors.append(ObservabilityInterceptor(self.metrics, sample_rate))
        interceptors.append(self.calls)
        security = self.settings.security
        if security.auth_enabled:
            interceptors.append(TokenAuthInterceptor(load_tokens(security)))
            if security.tls_cert_file is None:
                log.warning("bearer-token auth is on without TLS: tokens cross the network in plaintext")
        interceptors.append(MalformedRequestInterceptor())
        return interceptors

    def _build_batcher(self, servable: ServableVersion, spec: SignatureSpec) -> DynamicBatcher:
        """One batcher per signature: one worker per copy of the model (GPUs), else num_batch_workers workers."""
        settings = self.settings.batching_for(servable.model)
        if not all(tensor.batched for tensor in spec.inputs.values()):
            settings = settings.model_copy(update={"enabled": False})  # no batch dimension to merge along
        workers = servable.backend.worker_predict_fns(spec.name)
        if len(workers) < 2:
            workers = workers * settings.num_batch_workers
        name = f"{servable.model}/{servable.version}/{servable.variant}/{spec.name}"
        observer = None
        if self.metrics is not None:
            observer = self.metrics.batch_observer(
                servable.model, servable.version, servable.variant, spec.name, settings.max_queue_rows
            )
        return DynamicBatcher(workers, settings, name=name, observer=observer)

    def _on_state(self, servable: ServableVersion) -> None:
        if servable.state is VersionState.END and self.port is not None:
            asyncio.get_running_loop().call_soon(settle_heap)  # let the old version's frozen cycles be collected
        # Not during the first scan: its first AVAILABLE version would flip health to SERVING while
        # the other models are still loading (start() refreshes health once the scan is done).
        if not self._stopping and self._poller is not None:
            asyncio.get_running_loop().create_task(self.refresh_health())

    async def refresh_health(self) -> None:
        """Set health from the models' states; with workers, "" is SERVING only while every worker is ready."""
        names = self.manager.model_names()
        for name in names:
            await self.health.set(name, SERVING if self.manager.is_available(name) else NOT_SERVING)
        ready = any(self.manager.is_available(n) for n in names)
        if self.worker is not None and not self._stopping:
            ready = self.worker.report(ready)
        await self.health.set("", SERVING if ready else NOT_SERVING)


def _build_metrics(settings: Settings, registry: CollectorRegistry | None, multiprocess: bool) -> Metrics:
    """Metrics whose row buckets cover the largest max_batch_size configured for any model."""
    per_model = (settings.batching_for(model).max_batch_size for model in settings.models)
    max_rows = max([settings.batching.max_batch_size, *per_model])
    protocols = [TFSERVING_GRPC, V2_GRPC] + ([TFSERVING_REST, V2_REST] if settings.http.enabled else [])
    registry = registry if registry is not None else process_registry()
    return Metrics(registry, settings.metrics, max_rows, protocols, multiprocess=multiprocess)


def _reflection_pool():
    """Our private pool, plus the health and reflection protos so reflection can describe them."""
    from grpc_reflection.v1alpha import reflection_pb2

    for module in (health_pb2, reflection_pb2):
        with contextlib.suppress(TypeError):  # already added
            POOL.AddSerializedFile(module.DESCRIPTOR.serialized_pb)
    return POOL


async def serve(settings: Settings) -> None:
    """Run the server until SIGTERM or SIGINT, then drain within the grace period."""
    server = BatchwiseServer(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    http = f", HTTP on {settings.http.host}:{server.http_port}" if server.http_port is not None else ""
    print(f"batchwise serving on {settings.server.host}:{server.port}{http}", flush=True)
    await stop.wait()
    await server.stop()
