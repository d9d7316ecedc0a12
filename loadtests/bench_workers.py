"""Workers bench: `server.workers` 2 vs 1 on one port, driven by h2load (C, ~0.25 core) and the Python generator.

`python -m loadtests.bench_workers [--repository R --model M]` (builds the MNIST CNN when no
repository is given); `make bench` runs it as one section. Per point:
  - h2load sends a fixed gRPC frame (a zero byte, the 4-byte big-endian length, the serialized
    PredictRequest) on `--connections` HTTP/2 connections x `--streams` streams each (64 in flight
    by default; SO_REUSEPORT spreads connections, not streams, so several connections are needed);
  - h2load cannot see grpc-status, so every point checks the server's OK counter (/metrics)
    against h2load's request count, and a point that disagrees is reported as invalid;
  - the CPU of every server process (supervisor and workers) over the point gives CPU per request.
Rounds are interleaved ABBA; throughput is pooled (sum of requests / sum of time) per configuration.
Then one worker is driven open loop (h2load --rps) at half of workers 2's pooled rate, the load each
of two workers carries: its CPU per request tells how much of workers 2's extra CPU per request is
the load per process (less amortized per request) rather than the second process.
The 1-stream p50 comes from the Python generator (h2load reports no percentiles).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from loadtests import loadgen, payloads, servers

METHOD_PATH = payloads.PREDICT_METHOD
CONFIGS = {"workers_1": 1, "workers_2": 2}
# "not worse" for the p50 allows 5%: two runs of the same server differ by that much on this machine.
TARGETS = {"throughput_ratio_min": 1.1, "cpu_per_request_ratio_max": 1.1, "p50_ratio_max": 1.05}


def grpc_frame(request: bytes) -> bytes:
    """The HTTP/2 DATA payload of a unary gRPC call: uncompressed flag, big-endian length, message."""
    return b"\x00" + struct.pack(">I", len(request)) + request


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of `pid` and all its descendants, from /proc."""
    total, pending = 0.0, [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return total


def server_ok(metrics_port: int) -> float:
    """The server's batchwise_predict_requests_total{code="OK"}, summed over every label set (and worker)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    return sum(
        s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "batchwise_predict_requests_total" and s.labels.get("code") == "OK"
    )


def parse_h2load(output: str) -> dict:
    """Requests done and succeeded, elapsed seconds and req/s from h2load's summary."""
    finished = re.search(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s", output)
    counts = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed", output)
    if not finished or not counts:
        raise RuntimeError(f"unexpected h2load output:\n{output[-2000:]}")
    elapsed_s = float(finished.group(1)) / (1000 if finished.group(2) == "ms" else 1)
    return {
        "elapsed_s": elapsed_s,
        "rps": float(finished.group(3)),
        "done": int(counts.group(2)),
        "succeeded": int(counts.group(3)),
        "failed": int(counts.group(4)),
    }


def run_h2load(
    target: str, body: Path, requests: int, connections: int, streams: int, *, rps_per_connection: float = 0.0
) -> dict:
    """h2load's summary of `requests` unary calls; open loop at `rps_per_connection` when it is above 0."""
    rate = ["--rps", f"{rps_per_connection:.2f}"] if rps_per_connection > 0 else []
    command = [
        "h2load",
        *rate,
        "-n",
        str(requests),
        "-c",
        str(connections),
        "-m",
        str(streams),
        "-d",
        str(body),
        "-H",
        "content-type: application/grpc",
        "-H",
        "te: trailers",
        f"http://{target}{METHOD_PATH}",
    ]
    proc = subprocess.run(command, capture_output=True, text=True, check=False, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"h2load failed ({proc.returncode}): {proc.stderr[-1000:]}")
    return parse_h2load(proc.stdout)


class WorkersBench:
    """Both configurations started at once, measured in interleaved rounds."""

    def __init__(self, args: argparse.Namespace, work: Path, log=print) -> None:
        self.args, self.work, self.log = args, work, log

    def start(self, group: servers.ServerSet, repository: Path) -> dict[str, tuple[servers.RunningServer, int]]:
        started = {}
        for name, workers in CONFIGS.items():
            metrics_port = servers.free_port()
            args = [
                "--server.workers",
                str(workers),
                "--metrics.port",
                str(metrics_port),
                "--runtime.variant",
                self.args.variant,
            ]
            server = servers.start_ours(name, repository, args, env={}, log_dir=self.work)
            started[name] = (group.add(server), metrics_port)
        return started

    def h2load_point(
        self, server: servers.RunningServer, metrics_port: int, body: Path, requests: int, rps: float = 0.0
    ) -> dict:
        """One h2load point (closed loop, or open loop at `rps` in total), checked against the OK counter."""
        a = self.args
        per_connection = rps / a.connections
        run_h2load(
            server.target, body, max(200, requests // 10), a.connections, a.streams, rps_per_connection=per_connection
        )  # warm-up
        ok_before, cpu_before = server_ok(metrics_port), tree_cpu_s(server.pid)
        point = run_h2load(server.target, body, requests, a.connections, a.streams, rps_per_connection=per_connection)
        point["server_cpu_s"] = tree_cpu_s(server.pid) - cpu_before
        point["server_ok"] = int(server_ok(metrics_port) - ok_before)
        point["valid"] = point["server_ok"] == point["succeeded"] == requests  # h2load cannot see grpc-status
        point["cpu_ms_per_request"] = 1000 * point["server_cpu_s"] / max(1, point["server_ok"])
        point["load_average"] = list(os.getloadavg())
        return point

    def p50_point(self, server: servers.RunningServer, payload: Path) -> dict:
        a = self.args
        spec = {
            "target": server.target,
            "method": METHOD_PATH,
            "payload_file": str(payload),
            "duration_s": a.p50_duration_s,
            "warmup_s": 0.5,
            "timeout_s": 30.0,
            "channels": 1,
            "concurrency": [1],
        }
        (result,) = loadgen.run_in_subprocess(spec)
        result["load_average"] = list(os.getloadavg())
        return result

    def measure(self, started: dict, request: bytes, payload: Path) -> dict:
        body = self.work / "grpc-frame.bin"
        body.write_bytes(grpc_frame(request))
        a = self.args
        probe = run_h2load(started["workers_1"][0].target, body, 500, a.connections, a.streams)
        requests = max(500, int(probe["rps"] * a.duration_s))  # ~duration_s per point at one worker's rate
        points: dict[str, list[dict]] = {name: [] for name in CONFIGS}
        for r in range(a.rounds):
            for name in CONFIGS if r % 2 == 0 else reversed(list(CONFIGS)):  # ABBA across rounds
                server, metrics_port = started[name]
                point = self.h2load_point(server, metrics_port, body, requests)
                points[name].append(point)
                self.log(
                    f"round {r} {name}: {point['rps']:.0f} req/s, {point['cpu_ms_per_request']:.3f} ms CPU/req, "
                    f"OK counter {point['server_ok']}/{requests}, load {point['load_average'][0]:.2f}"
                )
        share = summarize_h2load(points)["workers_2"]["rps"] / CONFIGS["workers_2"]
        server, metrics_port = started["workers_1"]
        at_share = [self.h2load_point(server, metrics_port, body, int(share * a.duration_s), share) for _ in range(2)]
        self.log(f"workers_1 open loop at {share:.0f} req/s: {at_share[-1]['cpu_ms_per_request']:.3f} ms CPU/req")
        p50 = {name: [] for name in CONFIGS}
        for name in ("workers_1", "workers_2", "workers_2", "workers_1"):
            p50[name].append(self.p50_point(started[name][0], payload))
        return {
            "requests_per_point": requests,
            "h2load": points,
            "workers_1_at_share": at_share,
            "python_1_stream": p50,
        }


def summarize_h2load(points: dict[str, list[dict]]) -> dict[str, dict]:
    """Per configuration: pooled req/s, CPU per request, and whether every point's OK counter matched."""
    pooled = {}
    for name, runs in points.items():
        requests = sum(p["server_ok"] for p in runs)
        pooled[name] = {
            "rps": requests / sum(p["elapsed_s"] for p in runs),
            "cpu_ms_per_request": 1000 * sum(p["server_cpu_s"] for p in runs) / max(1, requests),
            "all_valid": all(p["valid"] for p in runs),
        }
    return pooled


def summarize(measured: dict) -> dict:
    """Pooled throughput, CPU per request and 1-stream p50 per configuration, and their ratios vs targets."""
    pooled = summarize_h2load(measured["h2load"])
    for name, row in pooled.items():
        row["p50_ms"] = min(p["p50_ms"] for p in measured["python_1_stream"][name])  # best of the ABBA pair
    one, two = pooled["workers_1"], pooled["workers_2"]
    ratios = {
        "throughput_2_vs_1": two["rps"] / one["rps"],
        "cpu_per_request_2_vs_1": two["cpu_ms_per_request"] / one["cpu_ms_per_request"],
        "p50_1_stream_2_vs_1": two["p50_ms"] / one["p50_ms"],
    }
    met = {
        "throughput_2_vs_1": ratios["throughput_2_vs_1"] >= TARGETS["throughput_ratio_min"],
        "cpu_per_request_2_vs_1": ratios["cpu_per_request_2_vs_1"] <= TARGETS["cpu_per_request_ratio_max"],
        "p50_1_stream_2_vs_1": ratios["p50_1_stream_2_vs_1"] <= TARGETS["p50_ratio_max"],
    }
    per_core = 1000 / two["cpu_ms_per_request"]  # req/s one core of server CPU buys in worker mode
    at_share = summarize_h2load({"workers_1": measured["workers_1_at_share"]})["workers_1"]
    explained = {  # no target: how much of the CPU ratio one process shows by itself at that load
        "cpu_per_request_1_at_share_vs_1": at_share["cpu_ms_per_request"] / one["cpu_ms_per_request"],
        "cpu_per_request_2_vs_1_at_share": two["cpu_ms_per_request"] / at_share["cpu_ms_per_request"],
    }
    return {
        "pooled": pooled,
        "ratios": ratios,
        "targets": TARGETS,
        "met": met,
        "rps_per_server_core": per_core,
        "workers_1_at_share_pooled": at_share,
        "explained": explained,
    }


def render(summary: dict) -> str:
    lines = ["Workers (h2load, pooled over interleaved rounds; p50 from the Python generator, 1 stream):"]
    for name, row in summary["pooled"].items():
        lines.append(
            f"  {name}: {row['rps']:.0f} req/s, {row['cpu_ms_per_request']:.3f} ms server CPU/req, "
            f"1-stream p50 {row['p50_ms']:.2f} ms, OK counters match h2load: {row['all_valid']}"
        )
    targets = {"throughput_2_vs_1": ">= 1.1", "cpu_per_request_2_vs_1": "<= 1.1", "p50_1_stream_2_vs_1": "<= 1.05"}
    for key, value in summary["ratios"].items():
        lines.append(f"  {key}: {value:.2f}x (target {targets[key]}) {'met' if summary['met'][key] else 'NOT met'}")
    share, explained = summary["workers_1_at_share_pooled"], summary["explained"]
    lines.append(
        f"  workers_1 open loop at workers_2's per-worker rate ({share['rps']:.0f} req/s): "
        f"{share['cpu_ms_per_request']:.3f} ms server CPU/req, "
        f"{explained['cpu_per_request_1_at_share_vs_1']:.2f}x its saturated figure; "
        f"workers_2 is {explained['cpu_per_request_2_vs_1_at_share']:.2f}x that"
    )
    lines.append(f"  one core of server CPU serves ~{summary['rps_per_server_core']:.0f} req/s in worker mode")
    return "\n".join(lines)


def run_section(args: argparse.Namespace, work: Path, repository: Path, payload: Path, *, log=print) -> dict:
    """Start workers 1 and 2 on `repository`, measure, stop them; returns the JSON-ready section."""
    if shutil.which("h2load") is None:
        raise RuntimeError("h2load is not installed (apt-get install nghttp2-client)")
    request = payload.read_bytes()
    bench = WorkersBench(args, work, log)
    with servers.ServerSet() as group:
        started = bench.start(group, repository)
        group.wait(request, METHOD_PATH)
        missing = [name for name in CONFIGS if name not in group.ready]
        if missing:
            raise RuntimeError(f"worker servers failed: {[group.failed[n] for n in missing]}")
        time.sleep(2.0)  # every worker of workers_2 loaded (its health is SERVING only then)
        measured = bench.measure(started, request, payload)
    return {**measured, **summarize(measured), "settings": vars(args) | {"repository": str(repository)}}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The section's flags (all prefixed --workers-), shared by bench.py; call section_args() after parsing."""
    parser.add_argument("--workers-rounds", type=int, help="interleaved rounds (default 3, quick 2)")
    parser.add_argument("--workers-duration-s", type=float, help="seconds per h2load point (default 8, quick 1)")
    parser.add_argument("--workers-p50-duration-s", type=float, help="1-stream point (default 4, quick 1)")
    parser.add_argument("--workers-connections", type=int, default=8, help="h2load connections")
    parser.add_argument("--workers-streams", type=int, default=8, help="h2load streams per connection")
    parser.add_argument("--workers-variant", default="int8", help="runtime.variant the workers serve")


def section_args(args: argparse.Namespace) -> argparse.Namespace:
    """This section's settings from parsed flags, with quick or full defaults filled in."""
    quick = getattr(args, "quick", False)
    return argparse.Namespace(
        rounds=args.workers_rounds or (2 if quick else 3),
        duration_s=args.workers_duration_s or (1.0 if quick else 8.0),
        p50_duration_s=args.workers_p50_duration_s or (1.0 if quick else 4.0),
        connections=args.workers_connections,
        streams=args.workers_streams,
        variant=args.workers_variant,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.bench_workers", description=__doc__.split("\n")[0])
    parser.add_argument("--repository", type=Path, help="model repository (default: build the MNIST CNN)")
    parser.add_argument("--model", default="mnist_cnn")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--output", type=Path, help="write the section's JSON here")
    add_arguments(parser)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="batchwise-workers-") as tmp:
        work = Path(tmp)
        repository = args.repository or _build_mnist(work)
        version_dir = max(
            (p for p in (repository / args.model).iterdir() if p.name.isdigit()), key=lambda p: int(p.name)
        )
        from loadtests.bench import sample_row

        _card, input_name, row = sample_row(version_dir)
        request = payloads.predict_request(args.model, {input_name: row})
        payload = work / "request.bin"
        payload.write_bytes(request)
        section = run_section(section_args(args), work, repository, payload)
    section["settings"] = {k: str(v) for k, v in section["settings"].items()}
    if args.output:
        args.output.write_text(json.dumps(section, indent=1) + "\n")
    print(render(section))
    return 0


def _build_mnist(work: Path) -> Path:
    proc = subprocess.run(
        [sys.executable, "-m", "loadtests.mnist_model", "--repository", str(work / "repo"), "--epochs", "1"],
        cwd=servers.ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(json.loads(proc.stdout.strip().splitlines()[-1])["version_dir"]).parents[1]


if __name__ == "__main__":
    sys.exit(main())
