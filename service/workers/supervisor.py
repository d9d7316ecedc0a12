"""The supervising parent of worker mode: starts N workers on one port, restarts the dead, drains all on SIGTERM.

The parent never serves API calls. It holds the port (bound with SO_REUSEPORT, not listening, so
the kernel gives it no connections) so that port 0 means one port for every worker, serves /metrics
by aggregating the workers' prometheus-client multiprocess files, and watches the readiness board.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import socket
import tempfile
import time
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess

from prometheus_client import multiprocess

from service.metrics import MetricsEndpoint, WorkerMetrics, multiprocess_registry
from service.settings import Settings
from service.workers.readiness import ReadinessBoard, WorkerRole
from service.workers.worker import run_worker

log = logging.getLogger(__name__)
TICK_S = 0.2  # how often the supervisor looks at its workers when nothing happens
RESTART_BASE_S = 0.5  # first restart delay; doubles per quick death in a row
RESTART_MAX_S = 10.0
STABLE_S = 30.0  # a worker that lived this long resets its backoff
MAX_START_FAILURES = 5  # a slot whose workers die this often in a row before ever serving: give up
STOP_MARGIN_S = 5.0  # beyond the grace period, before stragglers are killed


class CrashLoopError(RuntimeError):
    """A worker slot died MAX_START_FAILURES times in a row before it ever became ready."""


@dataclass
class _Slot:
    index: int
    process: BaseProcess | None = None
    started_s: float = 0.0
    was_ready: bool = False
    start_failures: int = 0  # deaths in a row before becoming ready
    quick_deaths: int = 0  # deaths in a row within STABLE_S of starting
    restart_at_s: float = 0.0
    exit_codes: list[int] = field(default_factory=list)


class Supervisor:
    """Runs `settings.server.workers` worker processes; `run()` blocks until SIGTERM/SIGINT or a crash loop.

    `run()` returns the process exit code: 0 when every worker drained cleanly, 1 after a crash
    loop or when a worker had to be killed. Raises OSError when the port cannot be bound.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.count = settings.server.worker_count
        self._context = multiprocessing.get_context("spawn")  # no fork: gRPC and TF threads do not survive it
        self._board = ReadinessBoard.create(self._context, self.count)
        self._slots = [_Slot(i) for i in range(self.count)]
        self._stop_requested = False
        self._metrics: WorkerMetrics | None = None
        self._metrics_dir: str | None = None

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._request_stop)
        reservations: list[socket.socket] = []
        endpoint = None
        try:
            worker_settings = self._reserve_ports(reservations)
            endpoint = self._start_metrics()
            for slot in self._slots:
                self._start(slot, worker_settings)
            return self._supervise(worker_settings, worker_settings.server.port)
        finally:
            if endpoint is not None:
                endpoint.stop()
            for reservation in reservations:
                reservation.close()
            if self._metrics_dir is not None:
                shutil.rmtree(self._metrics_dir, ignore_errors=True)

    def _reserve_ports(self, reservations: list[socket.socket]) -> Settings:
        """Hold every port the workers share (gRPC, HTTP when on, the health-only port when set) and
        return the workers' settings with each port resolved, so that port 0 means one port for all."""
        cfg, http = self.settings.server, self.settings.http

        def hold(host: str, port: int) -> int:
            reservations.append(reserve_port(host, port))
            return reservations[-1].getsockname()[1]

        server = {"port": hold(cfg.host, cfg.port)}
        if cfg.health_port is not None:
            server["health_port"] = hold(cfg.host, cfg.health_port)
        update: dict = {"server": cfg.model_copy(update=server)}
        if http.enabled:
            update["http"] = http.model_copy(update={"port": hold(http.host, http.port)})
        return self.settings.model_copy(update=update)

    def _request_stop(self, signum: int, _frame) -> None:
        log.info("received %s: draining %d workers", signal.Signals(signum).name, self.count)
        self._stop_requested = True

    def _start_metrics(self) -> MetricsEndpoint | None:
        """Give the workers a fresh multiprocess directory and serve its aggregate on the metrics port."""
        if not self.settings.metrics.enabled:
            return None
        self._metrics_dir = tempfile.mkdtemp(prefix="batchwise-metrics-")
        # prometheus-client picks multiprocess mode from this variable when a worker imports it;
        # spawned workers inherit it (the parent's own metrics were created before, in-process).
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = self._metrics_dir
        registry = multiprocess_registry(self._metrics_dir)
        self._metrics = WorkerMetrics(registry)
        endpoint = MetricsEndpoint(registry, self.settings.metrics)
        log.info(
            "metrics of %d workers on http://%s:%s/metrics", self.count, self.settings.metrics.host, endpoint.start()
        )
        return endpoint

    def _start(self, slot: _Slot, settings: Settings) -> None:
        role = WorkerRole(slot.index, self.count, self._board)
        process = self._context.Process(target=run_worker, args=(settings, role), name=f"batchwise-{role.name}")
        process.start()
        slot.process, slot.started_s, slot.was_ready = process, time.monotonic(), False
        log.info("started worker %d (pid %d)", slot.index, process.pid)

    def _supervise(self, settings: Settings, port: int) -> int:
        announced = False
        while not self._stop_requested:
            alive = [s.process.sentinel for s in self._slots if s.process is not None]
            multiprocessing.connection.wait(alive, timeout=TICK_S)
            if self._stop_requested:
                break
            try:
                self._tend(settings)
            except CrashLoopError as exc:
                log.error("%s", exc)
                self._stop_all()
                return 1
            if not announced and self._board.all_ready():
                announced = True
                print(f"batchwise serving on {settings.server.host}:{port} ({self.count} workers)", flush=True)
        return self._stop_all()

    def _tend(self, settings: Settings) -> None:
        """Note readiness, reap dead workers, start the ones whose restart time has come."""
        now = time.monotonic()
        for slot in self._slots:
            if slot.process is not None and slot.process.exitcode is not None:
                self._reap(slot, now)
            elif slot.process is not None and not slot.was_ready and self._board.is_ready(slot.index):
                slot.was_ready, slot.start_failures = True, 0
            if slot.process is None and now >= slot.restart_at_s:
                self._start(slot, settings)
                if self._metrics is not None:
                    self._metrics.restarts.labels(str(slot.index)).inc()
        if self._metrics is not None:
            self._metrics.ready.set(self._board.ready_count())

    def _reap(self, slot: _Slot, now: float) -> None:
        """Forget a dead worker; schedule its restart with backoff, or raise CrashLoopError."""
        process = slot.process
        assert process is not None and process.exitcode is not None
        self._board.set(slot.index, False)
        if self._metrics_dir is not None:
            multiprocess.mark_process_dead(process.pid, self._metrics_dir)
        lived_s = now - slot.started_s
        slot.process = None
        slot.exit_codes.append(process.exitcode)
        slot.start_failures = 0 if slot.was_ready else slot.start_failures + 1
        slot.quick_deaths = slot.quick_deaths + 1 if lived_s < STABLE_S else 0
        if slot.start_failures >= MAX_START_FAILURES:
            raise CrashLoopError(
                f"worker {slot.index} died {slot.start_failures} times in a row before serving "
                f"({describe_exit(slot.exit_codes[-1])}); giving up. The worker's log above says why "
                "(often a model whose load kills the process, or too little memory for N model copies)"
            )
        delay_s = min(RESTART_MAX_S, RESTART_BASE_S * 2 ** max(0, slot.quick_deaths - 1))
        slot.restart_at_s = now + delay_s
        log.warning(
            "worker %d (pid %d) %s after %.1f s; restarting in %.1f s",
            slot.index,
            process.pid,
            describe_exit(process.exitcode),
            lived_s,
            delay_s,
        )

    def _stop_all(self) -> int:
        """SIGTERM every worker (each drains as a single server does); kill those past grace + margin."""
        running = [s.process for s in self._slots if s.process is not None and s.process.exitcode is None]
        for process in running:
            process.terminate()
        deadline_s = time.monotonic() + self.settings.server.grace_period_s + STOP_MARGIN_S
        clean = True
        for process in running:
            process.join(max(0.0, deadline_s - time.monotonic()))
            if process.exitcode is None:
                log.error("worker pid %d did not drain in time; killing it", process.pid)
                process.kill()
                process.join()
            clean = clean and process.exitcode == 0
        log.info("all workers stopped%s", "" if clean else " (not all cleanly)")
        return 0 if clean else 1


def reserve_port(host: str, port: int) -> socket.socket:
    """Bind (not listen on) host:port with SO_REUSEPORT and return the socket: it keeps the port for the workers.

    Port 0 picks a free port. Raises OSError naming the address when a server without
    SO_REUSEPORT (a plain Batchwise, say) already holds it.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot bind {host}:{port} for the workers: {exc.strerror}") from exc
    return sock


def describe_exit(exitcode: int) -> str:
    """'exited with 3' or 'was killed by SIGKILL' for a multiprocessing exit code."""
    if exitcode < 0:
        return f"was killed by {signal.Signals(-exitcode).name}"
    return f"exited with {exitcode}"
