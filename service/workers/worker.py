"""One worker process: a full server on the shared port that follows its siblings' readiness and its parent's life."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import signal

from prometheus_client import CollectorRegistry

from service.logs import configure_logging
from service.settings import Settings
from service.workers.readiness import WorkerRole

log = logging.getLogger(__name__)
FOLLOW_PERIOD_S = 0.25  # how often a worker re-reads its siblings' readiness and samples its gauges


def run_worker(settings: Settings, role: WorkerRole) -> None:
    """Entry point of a spawned worker: serve until SIGTERM/SIGINT or until the parent dies, then drain.

    Exits 0 after a drain; an exception (e.g. the port cannot be bound) exits non-zero and the
    supervisor restarts or gives up.
    """
    configure_logging(settings.logging, worker=role.name)
    from service import eventloop

    eventloop.run(serve_worker(settings, role), settings.server.event_loop)


async def serve_worker(settings: Settings, role: WorkerRole) -> None:
    """The worker's life: start the server, follow readiness, drain with the usual grace period on a stop."""
    from service.app import BatchwiseServer

    # A plain registry: the values go to the multiprocess files the supervisor reads (process
    # collectors are not aggregated across processes by prometheus-client, so none here).
    server = BatchwiseServer(settings, CollectorRegistry(), worker=role)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    parent = multiprocessing.parent_process()
    if parent is not None:  # the pipe from the parent reads EOF once the parent is gone, even if SIGKILLed
        loop.add_reader(parent.sentinel, _on_parent_gone, loop, parent.sentinel, stop)
    await server.start()
    log.info("worker %d of %d serving on port %s", role.index, role.count, server.port)
    follower = loop.create_task(_follow(server))
    await stop.wait()
    follower.cancel()
    await server.stop()


def _on_parent_gone(loop: asyncio.AbstractEventLoop, fd: int, stop: asyncio.Event) -> None:
    loop.remove_reader(fd)
    log.warning("the supervisor is gone; draining")
    stop.set()


async def _follow(server) -> None:
    """Keep health in step with the other workers' readiness, and sampled gauges current."""
    while True:
        await asyncio.sleep(FOLLOW_PERIOD_S)
        try:
            await server.refresh_health()
            if server.metrics is not None:
                server.metrics.sample_gauges()
        except Exception:  # never let a bookkeeping hiccup end the worker
            log.exception("could not refresh worker health or gauges")
