"""A light gRPC load generator: closed loop at fixed concurrencies, or open loop at a fixed arrival rate.

It sends one pre-serialized request (raw bytes, no serializer, responses left as bytes) through
a generic `channel.unary_unary(method)` stub over several channels, so per-call protobuf work
never steals the CPU being measured. Run it in its own process (`python -m loadtests.loadgen`,
or `run_in_subprocess`); it prints one JSON document.

  closed loop  N workers, each sending its next request when the last one returns; after a
               warm-up, completions in a timed window give throughput and latency percentiles.
  open loop    requests start at a fixed rate whatever happens to earlier ones (a scheduled
               arrival process); gives admitted and rejected rates and the admitted latency.
Errors are counted by gRPC status code; a point with errors is not a throughput figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import grpc
import numpy as np

DEFAULT_CHANNELS = 4
CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)]


@dataclass
class PointResult:
    """One measured point: a closed-loop concurrency or an open-loop rate."""

    mode: str  # "closed" | "open"
    concurrency: int  # closed loop: N in flight; open loop: the most in flight seen
    duration_s: float
    ok: int
    errors: dict[str, int]  # gRPC status code name -> count
    throughput_rps: float  # OK completions per second
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    mean_ms: float | None
    offered_rps: float | None = None  # open loop: the arrival rate asked for
    sent_rps: float | None = None  # open loop: the arrival rate achieved
    rejected_rps: float | None = None  # open loop: UNAVAILABLE per second (our bounded queues refused)
    cancelled_rps: float | None = None  # open loop: CANCELLED per second (gRPC core shed calls not yet accepted)
    # CPU of this generator process (all its threads) over the point, in cores: near 1 its one event loop is
    # saturated, so latencies include its own backlog and say little about the server.
    client_cpu_cores: float | None = None
    latencies_ms: list[float] = field(default_factory=list)  # only with raw latencies on


def _percentiles(latencies_s: list[float]) -> dict[str, float | None]:
    if not latencies_s:
        return {"p50_ms": None, "p90_ms": None, "p99_ms": None, "mean_ms": None}
    values = np.asarray(latencies_s) * 1e3
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {"p50_ms": float(p50), "p90_ms": float(p90), "p99_ms": float(p99), "mean_ms": float(values.mean())}


class _Calls:
    """Generic raw-bytes stubs for `method` over `channels` HTTP/2 connections to `target`."""

    def __init__(self, target: str, method: str, channels: int) -> None:
        self.channels = [grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS) for _ in range(channels)]
        # No serializers: the request is bytes already and the response stays bytes.
        self.stubs = [channel.unary_unary(method) for channel in self.channels]

    async def ready(self, timeout_s: float) -> None:
        await asyncio.wait_for(asyncio.gather(*(c.channel_ready() for c in self.channels)), timeout_s)

    async def close(self) -> None:
        await asyncio.gather(*(channel.close() for channel in self.channels))


async def closed_loop(
    calls: _Calls, payload: bytes, concurrency: int, *, duration_s: float, warmup_s: float,
    timeout_s: float, raw: bool = False,
) -> PointResult:
    """N workers in a closed loop; measures completions inside [warm-up end, warm-up end + duration]."""
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    window = {"start": float("inf"), "end": float("inf")}
    stop = False

    async def worker(i: int) -> None:
        stub = calls.stubs[i % len(calls.stubs)]
        clock = time.perf_counter
        while not stop:
            start = clock()
            try:
                await stub(payload, timeout=timeout_s)
                code = None
            except grpc.aio.AioRpcError as exc:
                code = exc.code().name
            end = clock()
            if window["start"] <= start and end <= window["end"]:
                if code is None:
                    latencies.append(end - start)
                else:
                    errors[code] += 1

    tasks = [asyncio.ensure_future(worker(i)) for i in range(concurrency)]
    await asyncio.sleep(warmup_s)
    window["start"] = time.perf_counter()
    window["end"] = window["start"] + duration_s
    cpu_start_s = time.process_time()
    await asyncio.sleep(duration_s)
    cpu_cores = (time.process_time() - cpu_start_s) / (time.perf_counter() - window["start"])
    stop = True
    await asyncio.gather(*tasks)
    return PointResult(
        "closed", concurrency, duration_s, len(latencies), dict(errors), len(latencies) / duration_s,
        **_percentiles(latencies), client_cpu_cores=cpu_cores,
        latencies_ms=[x * 1e3 for x in latencies] if raw else [],
    )


class _OpenLoop:
    """One open-loop run: starts calls on a fixed arrival grid and records their outcomes."""

    def __init__(self, calls: _Calls, payload: bytes, timeout_s: float, max_inflight: int) -> None:
        self.calls, self.payload, self.timeout_s, self.max_inflight = calls, payload, timeout_s, max_inflight
        self.latencies: list[float] = []
        self.errors: Counter[str] = Counter()
        self.inflight: set[asyncio.Task] = set()
        self.peak = 0

    async def one(self, stub) -> None:
        start = time.perf_counter()
        try:
            await stub(self.payload, timeout=self.timeout_s)
            self.latencies.append(time.perf_counter() - start)
        except grpc.aio.AioRpcError as exc:
            self.errors[exc.code().name] += 1

    def start(self, index: int) -> None:
        if len(self.inflight) >= self.max_inflight:
            self.errors["CLIENT_OVERFLOW"] += 1
            return
        task = asyncio.ensure_future(self.one(self.calls.stubs[index % len(self.calls.stubs)]))
        self.inflight.add(task)
        task.add_done_callback(self.inflight.discard)

    async def send(self, rate_rps: float, total: int) -> float:
        """Start `total` calls at `rate_rps` (overdue ones at once); returns the seconds it took."""
        clock = time.perf_counter
        begin = clock()
        sent = 0
        while sent < total:
            due = min(total, int((clock() - begin) * rate_rps) + 1)
            while sent < due:
                self.start(sent)
                sent += 1
            self.peak = max(self.peak, len(self.inflight))
            await asyncio.sleep(max(0.0, begin + sent / rate_rps - clock()))
        return clock() - begin


async def open_loop(
    calls: _Calls, payload: bytes, rate_rps: float, *, duration_s: float, timeout_s: float,
    max_inflight: int = 20000, raw: bool = False,
) -> PointResult:
    """Start requests at `rate_rps` for `duration_s` (no warm-up: run a closed point first); wait for all.

    Arrivals are scheduled on a fixed grid; when the loop falls behind, the overdue requests
    start at once (so the achieved rate is kept, and reported as sent_rps). Requests beyond
    `max_inflight` outstanding are not sent and count as CLIENT_OVERFLOW.
    """
    run = _OpenLoop(calls, payload, timeout_s, max_inflight)
    total = int(rate_rps * duration_s)
    cpu_start_s, wall_start_s = time.process_time(), time.perf_counter()
    send_s = await run.send(rate_rps, total)
    if run.inflight:
        await asyncio.gather(*run.inflight)
    cpu_cores = (time.process_time() - cpu_start_s) / (time.perf_counter() - wall_start_s)
    errors = run.errors
    return PointResult(
        "open", run.peak, duration_s, len(run.latencies), dict(errors), len(run.latencies) / send_s,
        **_percentiles(run.latencies), offered_rps=rate_rps, sent_rps=total / send_s,
        rejected_rps=errors.get("UNAVAILABLE", 0) / send_s, cancelled_rps=errors.get("CANCELLED", 0) / send_s,
        client_cpu_cores=cpu_cores,
        latencies_ms=[x * 1e3 for x in run.latencies] if raw else [],
    )


async def run(spec: dict) -> list[dict]:
    """Run every point of `spec` (see main's flags) against one target; returns PointResult dicts."""
    payload = Path(spec["payload_file"]).read_bytes()
    calls = _Calls(spec["target"], spec["method"], spec.get("channels", DEFAULT_CHANNELS))
    try:
        await calls.ready(spec.get("connect_timeout_s", 30.0))
        results = []
        for n in spec.get("concurrency", []):
            point = await closed_loop(
                calls, payload, n, duration_s=spec["duration_s"], warmup_s=spec["warmup_s"],
                timeout_s=spec["timeout_s"], raw=spec.get("raw", False),
            )
            results.append(asdict(point))
        for rate in spec.get("rates", []):
            point = await open_loop(
                calls, payload, rate, duration_s=spec["duration_s"], timeout_s=spec["timeout_s"],
                raw=spec.get("raw", False),
            )
            results.append(asdict(point))
        return results
    finally:
        await calls.close()


def run_in_subprocess(spec: dict, python: str = sys.executable, timeout_s: float | None = None) -> list[dict]:
    """Run `spec` in a fresh `python -m loadtests.loadgen` process and return its points.

    Raises subprocess.CalledProcessError (with its stderr) if the generator fails.
    """
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [python, "-m", "loadtests.loadgen", "--spec", json.dumps(spec)],
        cwd=root, capture_output=True, text=True, timeout=timeout_s, check=False,
    )
    if proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, proc.args, proc.stdout, proc.stderr)
    return json.loads(proc.stdout)


def main(argv: list[str] | None = None) -> int:
    """CLI: either --spec JSON, or flags; prints a JSON list of points on stdout."""
    parser = argparse.ArgumentParser(prog="python -m loadtests.loadgen", description=__doc__.split("\n")[0])
    parser.add_argument("--spec", help="the whole run as JSON (what run_in_subprocess passes)")
    parser.add_argument("--target", default="127.0.0.1:8500")
    parser.add_argument("--method", default="/tensorflow.serving.PredictionService/Predict")
    parser.add_argument("--payload-file", help="serialized request bytes (see loadtests/payloads.py)")
    parser.add_argument("--concurrency", default="1,8,32,64,128", help="closed-loop points, comma separated")
    parser.add_argument("--rates", default="", help="open-loop arrival rates (requests/s), comma separated")
    parser.add_argument("--duration-s", type=float, default=10.0)
    parser.add_argument("--warmup-s", type=float, default=2.0)
    parser.add_argument("--timeout-s", type=float, default=10.0, help="per-call deadline")
    parser.add_argument("--channels", type=int, default=DEFAULT_CHANNELS)
    parser.add_argument("--raw", action="store_true", help="include every latency in the output")
    args = parser.parse_args(argv)
    if args.spec:
        spec = json.loads(args.spec)
    else:
        if not args.payload_file:
            parser.error("--payload-file or --spec is required")
        spec = {
            "target": args.target, "method": args.method, "payload_file": args.payload_file,
            "concurrency": [int(n) for n in args.concurrency.split(",") if n],
            "rates": [float(r) for r in args.rates.split(",") if r], "duration_s": args.duration_s,
            "warmup_s": args.warmup_s, "timeout_s": args.timeout_s, "channels": args.channels, "raw": args.raw,
        }
    json.dump(asyncio.run(run(spec)), sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
