"""REST benchmark points for issue 18, measured side by side in one run on the MNIST CNN with one-row requests.

    python -m loadtests.bench_rest [--quick] [--peer-workers 0,1] [--duration-s 10] [--version-dir DIR]

  1. REST (TF Serving JSON `{"instances": [row]}`) against our server at 64 clients >= 2x MLServer's v2 REST
     (`/v2/models/m/infer`, JSON tensors) with the same model and batching knobs; MLServer's best
     parallel_workers setting of the run is the reference.
  2. REST p50 at 1 client <= 0.5x MLServer's (its best p50).
  3. gRPC throughput at 64 clients with the HTTP server on but idle >= 0.98x with it off: two fresh servers,
     measured in ABBA order (on, off, off, on, ...) so that drift over the run cancels.
The HTTP load generator is h2load (Debian's nghttp2-client, in C, ~0.25 core) over HTTP/1.1 (`--h1`), the same
for both servers: -c N connections with one request each in flight (-m 1) is a closed loop at N, posting one
fixed JSON body; latencies come from its per-request log. The gRPC points use h2load too (8 connections x 8
streams, the body a gRPC frame), each checked against the server's OK counter. The REST
points are interleaved per concurrency (ours, MLServer..., then reversed: ABBA). Writes
loadtests/results/<date>-<machine>-rest.json and prints every ratio against its target.
`make bench` runs this as its last phase (bench.py's hook) with the same settings.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

from loadtests import payloads, report, servers
from loadtests.bench_workers import grpc_frame, run_h2load, server_ok
from loadtests.servers import RunningServer

HERE = Path(__file__).resolve().parent
JSON_HEADER = "content-type: application/json"
TARGETS = {  # figure -> (target, at_most)
    "rest_over_mlserver_rest_throughput_64": (2.0, False),
    "rest_over_mlserver_rest_p50_1": (0.5, True),
    "grpc_http_idle_over_http_off_64": (0.98, False),
}


def h2load_point(url: str, body: Path, clients: int, *, duration_s: float, warmup_s: float, work: Path) -> dict:
    """One closed-loop HTTP/1.1 point with h2load: throughput of 2xx replies and latency percentiles.

    Raises RuntimeError when h2load is missing or fails. Statuses other than 2xx are counted in `errors`
    (a point with errors is not a throughput figure).
    """
    h2load = shutil.which("h2load")
    if h2load is None:
        raise RuntimeError("h2load not found: apt-get install nghttp2-client")
    log = work / f"h2load-{clients}-{time.monotonic_ns()}.tsv"
    command = [h2load, "--h1", "-c", str(clients), "-m", "1", "-D", f"{round(duration_s * 1000)}ms", "--warm-up-time",
               f"{round(warmup_s * 1000)}ms", "-d", str(body), "-H", JSON_HEADER, f"--log-file={log}", url]  # fmt: skip
    cpu_before = _children_cpu_s()
    done = subprocess.run(command, capture_output=True, text=True, timeout=duration_s + warmup_s + 60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"h2load failed ({done.returncode}): {done.stderr[-1000:]}")
    rows = [line.split("\t") for line in log.read_text().splitlines() if line.strip()]
    log.unlink()
    statuses = [int(row[1]) for row in rows]
    ok_latencies_ms = np.array([int(row[2]) / 1000 for row in rows if 200 <= int(row[1]) < 300])
    errors: dict[str, int] = {}
    for status in statuses:
        if not 200 <= status < 300:
            errors[str(status)] = errors.get(str(status), 0) + 1
    failed = _h2load_count(done.stdout, "failed")
    if failed:
        errors["transport"] = failed
    return {
        "mode": "closed", "concurrency": clients, "duration_s": duration_s, "ok": len(ok_latencies_ms),
        "errors": errors, "throughput_rps": len(ok_latencies_ms) / duration_s, **_percentiles(ok_latencies_ms),
        "client_cpu_cores": (_children_cpu_s() - cpu_before) / (duration_s + warmup_s), "generator": "h2load --h1",
    }  # fmt: skip


def _percentiles(latencies_ms: np.ndarray) -> dict:
    if not len(latencies_ms):
        return {"p50_ms": None, "p90_ms": None, "p99_ms": None, "mean_ms": None}
    p50, p90, p99 = np.percentile(latencies_ms, [50, 90, 99])
    return {"p50_ms": float(p50), "p90_ms": float(p90), "p99_ms": float(p99), "mean_ms": float(latencies_ms.mean())}


def _h2load_count(stdout: str, field: str) -> int:
    """A count from h2load's `requests: ... N failed ...` summary line (0 when absent)."""
    for line in stdout.splitlines():
        if line.startswith("requests:"):
            words = line.replace(",", "").split()
            return int(words[words.index(field) - 1]) if field in words else 0
    return 0


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def write_bodies(version_dir: Path, work: Path) -> tuple[Path, Path, np.ndarray]:
    """(TF Serving row-format body, v2 JSON body, the row) for the model card's first sample row."""
    card = json.loads((version_dir / "model_card.json").read_text())
    (input_name,) = card["samples"]["inputs"]
    row = np.asarray(card["samples"]["inputs"][input_name][:1], dtype=np.float32)
    tfserving = work / "rest-tfserving.json"
    tfserving.write_text(json.dumps({"instances": row.tolist()}, separators=(",", ":")))
    v2 = {"inputs": [{"name": input_name, "shape": list(row.shape), "datatype": "FP32", "data": row.ravel().tolist()}]}
    v2_body = work / "rest-v2.json"
    v2_body.write_text(json.dumps(v2, separators=(",", ":")))
    return tfserving, v2_body, row


def post_json(url: str, body: Path) -> dict:
    """POST a JSON body once; the parsed reply (raises urllib.error.HTTPError on a non-2xx status)."""
    request = urllib.request.Request(url, data=body.read_bytes(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as reply:
        return json.loads(reply.read())


def check_answers(urls: dict[str, str], tfserving_body: Path, v2_body: Path) -> dict[str, list[float]]:
    """One answer from every REST endpoint, and that they agree (allclose): both servers run the same model."""
    answers = {}
    for name, url in urls.items():
        if name == "batchwise":
            answers[name] = np.asarray(post_json(url, tfserving_body)["predictions"], np.float32).ravel()
        else:
            answers[name] = np.asarray(post_json(url, v2_body)["outputs"][0]["data"], np.float32).ravel()
    reference = answers["batchwise"]
    for name, values in answers.items():
        if not np.allclose(values, reference, atol=1e-4):
            raise RuntimeError(f"{name} answers {values.tolist()} but batchwise {reference.tolist()}")
    return {name: values.tolist() for name, values in answers.items()}


class RestBench:
    """The REST section of a benchmark run: its settings, scratch folder and logger."""

    def __init__(self, args: argparse.Namespace, work: Path, log) -> None:
        self.args, self.work, self.log = args, work, log
        self.metrics_ports: dict[str, int] = {}

    def start_ours(self, name: str, repository: Path, http: bool) -> tuple[RunningServer, str | None]:
        http_port, self.metrics_ports[name] = servers.free_port(), servers.free_port()
        args = ["--metrics.port", str(self.metrics_ports[name]), "--runtime.variant", "savedmodel",
                *self.args.server_arg, "--http.host", "127.0.0.1", "--http.port", str(http_port)]  # fmt: skip
        env = {} if http else {"BATCHWISE_HTTP__ENABLED": "false"}
        server = servers.start_ours(name, repository, args, env=env, log_dir=self.work)
        return server, (f"http://127.0.0.1:{http_port}" if http else None)

    def run(self, version_dir: Path) -> dict:
        """Start our three servers and every MLServer, measure, stop them all; the section's results."""
        from loadtests import peer_mlserver

        model = version_dir.parent.name
        request = self.work / "rest-bench-grpc-request.bin"
        tfserving_body, v2_body, row = write_bodies(version_dir, self.work)
        (input_name,) = json.loads((version_dir / "model_card.json").read_text())["samples"]["inputs"]
        request.write_bytes(payloads.predict_request(model, {input_name: row}))
        batching = report.server_settings(self.args.server_arg).batching
        result: dict = {"load_average_start": list(os.getloadavg()), "model": model, "rows_per_request": 1}
        peers: dict[str, object] = {}
        with servers.ServerSet() as group:
            rest_server, rest_base = self.start_ours("rest", version_dir.parents[1], http=True)
            idle_on, _ = self.start_ours("grpc_http_idle", version_dir.parents[1], http=True)
            idle_off, _ = self.start_ours("grpc_http_off", version_dir.parents[1], http=False)
            for server in (rest_server, idle_on, idle_off):
                group.add(server)
            try:
                for workers in self.args.peer_workers if self.args.peer == "mlserver" else []:
                    self.log(f"starting MLServer (max_batch_size {batching.max_batch_size}, max_batch_time "
                             f"{batching.batch_timeout_ms} ms, parallel_workers {workers})")  # fmt: skip
                    peers[f"mlserver-w{workers}"] = peer_mlserver.start_mlserver(
                        version_dir, servers.free_port(), max_batch_size=batching.max_batch_size,
                        max_batch_time_s=batching.batch_timeout_ms / 1000, parallel_workers=workers,
                    )  # fmt: skip
                group.wait(request.read_bytes(), payloads.PREDICT_METHOD, model=model)
                if len(group.ready) != 3:
                    raise RuntimeError(f"our servers failed: {group.failed}")
                urls = {"batchwise": f"{rest_base}/v1/models/{model}:predict"}
                for name, proc in peers.items():
                    urls[name] = f"http://127.0.0.1:{proc.http_port}/v2/models/{proc.model_name}/infer"
                result["answers"] = check_answers(urls, tfserving_body, v2_body)
                result["rest"] = self.rest_points(urls, tfserving_body, v2_body)
                result["grpc_http_idle"] = self.idle_pairs(idle_on, idle_off, request)
            finally:
                for proc in peers.values():
                    peer_mlserver.stop(proc)
        result["peer"] = {
            "server": "mlserver",
            "version": peer_mlserver.installed_version() if peers else None,
            "parallel_workers": list(self.args.peer_workers) if peers else [],
            "max_batch_size": batching.max_batch_size,
            "max_batch_time_ms": batching.batch_timeout_ms,
        }
        result["load_average_end"] = list(os.getloadavg())
        result["ratios"] = rest_ratios(result)
        return result

    def rest_points(self, urls: dict[str, str], tfserving_body: Path, v2_body: Path) -> dict[str, list[dict]]:
        """At 1 and 64 clients, every server in turn, then again in reverse order (ABBA per concurrency)."""
        points: dict[str, list[dict]] = {name: [] for name in urls}
        names = list(urls)
        for clients in (1, 64):
            for order in (names, names[::-1]) if len(names) > 1 else (names,):
                for name in order:
                    body = tfserving_body if name == "batchwise" else v2_body
                    a = self.args
                    point = h2load_point(
                        urls[name], body, clients, duration_s=a.duration_s, warmup_s=a.warmup_s, work=self.work
                    )
                    point["load_average_1m"] = os.getloadavg()[0]
                    points[name].append(point)
                    self.log(f"REST {name:14s} N={clients:<3d} {report.describe_point(point)}")
        return points

    def idle_pairs(self, on: RunningServer, off: RunningServer, request: Path) -> dict[str, list[dict]]:
        """gRPC at 64 streams (h2load, 8 connections x 8) against the HTTP-on (idle) and HTTP-off servers in
        ABBA order, after one untimed warm-up run on each. h2load leaves the servers their cores, so that a
        difference of a few percent is not lost in the generator's own noise; it cannot see grpc-status, so
        each point is checked against the server's OK counter."""
        body = self.work / "rest-bench-grpc-frame.bin"
        body.write_bytes(grpc_frame(request.read_bytes()))
        count = 3_000 if self.args.quick else 25_000
        pairs: dict[str, list[dict]] = {"on": [], "off": []}
        for server in (on, off):
            run_h2load(server.target, body, count // 10, 8, 8)
        for key in ("on", "off", "off", "on") * (1 if self.args.quick else 2):
            server = on if key == "on" else off
            ok_before = server_ok(self.metrics_ports[server.name])
            done = run_h2load(server.target, body, count, 8, 8)
            ok = int(server_ok(self.metrics_ports[server.name]) - ok_before)
            point = {"concurrency": 64, "generator": "h2load gRPC 8x8", "throughput_rps": done["rps"],
                     "requests": count, "server_ok": ok, "errors": count - min(ok, done["succeeded"]),
                     "load_average_1m": os.getloadavg()[0]}  # fmt: skip
            pairs[key].append(point)
            self.log(f"gRPC http {key:3s} N=64  {done['rps']:.0f}/s, {ok} of {count} OK")
        return pairs


def _mean_at(points: list[dict], clients: int, key: str) -> float | None:
    """Mean of `key` over one server's error-free points at `clients` (its ABBA pair)."""
    values = [p[key] for p in points if p["concurrency"] == clients and not p["errors"] and p[key] is not None]
    return float(np.mean(values)) if values else None


def rest_ratios(result: dict) -> dict:
    """The three targets as {value, target, comparison, met}; against MLServer's best configuration per figure."""
    rest = result.get("rest", {})
    ours = rest.get("batchwise", [])
    peers = {name: points for name, points in rest.items() if name != "batchwise"}
    peer_rps = [v for v in (_mean_at(p, 64, "throughput_rps") for p in peers.values()) if v is not None]
    peer_p50 = [v for v in (_mean_at(p, 1, "p50_ms") for p in peers.values()) if v is not None]
    on = [p["throughput_rps"] for p in result.get("grpc_http_idle", {}).get("on", []) if not p["errors"]]
    off = [p["throughput_rps"] for p in result.get("grpc_http_idle", {}).get("off", []) if not p["errors"]]
    values = {
        "rest_over_mlserver_rest_throughput_64": _div(
            _mean_at(ours, 64, "throughput_rps"), max(peer_rps, default=None)
        ),
        "rest_over_mlserver_rest_p50_1": _div(_mean_at(ours, 1, "p50_ms"), min(peer_p50, default=None)),
        "grpc_http_idle_over_http_off_64": _div(np.mean(on) if on else None, np.mean(off) if off else None),
    }
    return {key: _target(value, *TARGETS[key]) for key, value in values.items()}


def _target(value: float | None, target: float, at_most: bool) -> dict:
    met = None if value is None else (value <= target if at_most else value >= target)
    return {"value": value, "target": target, "comparison": "<=" if at_most else ">=", "met": met}


def _div(a, b) -> float | None:
    return None if a is None or b in (None, 0) else float(a) / float(b)


def render(result: dict) -> str:
    """The REST points and the ratios as text tables."""
    lines = [f"REST section (load average at start {result['load_average_start']}, end {result['load_average_end']})"]
    for name, points in result.get("rest", {}).items():
        for point in points:
            lines.append(f"  REST {name:14s} N={point['concurrency']:<3d} {report.describe_point(point)} "
                         f"(load {point['load_average_1m']:.2f})")  # fmt: skip
    for key, points in result.get("grpc_http_idle", {}).items():
        for point in points:
            lines.append(f"  gRPC http {key:3s}      N=64  {point['throughput_rps']:.0f}/s, {point['server_ok']} of "
                         f"{point['requests']} OK, {point['generator']} (load {point['load_average_1m']:.2f})")
    for key, ratio in result["ratios"].items():
        met = {True: "met", False: "NOT met", None: "not measured"}[ratio["met"]]
        value = "n/a" if ratio["value"] is None else f"{ratio['value']:.3f}"
        lines.append(f"  {key:40s} {value:>7s}  target {ratio['comparison']} {ratio['target']}  {met}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m loadtests.bench_rest", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 s points, one ABBA round of the idle pair")
    parser.add_argument("--duration-s", type=float, help="timed window per point (default 10, quick 2)")
    parser.add_argument("--warmup-s", type=float, help="warm-up per point (default 2, quick 0.5)")
    parser.add_argument("--peer", choices=("mlserver", "none"), help="default mlserver; none with --quick")
    parser.add_argument("--peer-workers", default="0,1", help="MLServer parallel_workers values (one MLServer each)")
    parser.add_argument("--version-dir", type=Path, help="an MNIST CNN version folder (default: build one)")
    parser.add_argument("--epochs", type=int, help="training epochs when building the model (default 3, quick 1)")
    parser.add_argument("--server-arg", action="append", default=[], help="extra flag for our servers (repeat)")
    parser.add_argument("--results-dir", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    args.duration_s = args.duration_s or (2.0 if args.quick else 10.0)
    args.warmup_s = args.warmup_s if args.warmup_s is not None else (0.5 if args.quick else 2.0)
    args.peer = args.peer or ("none" if args.quick else "mlserver")
    args.peer_workers = [int(w) for w in args.peer_workers.split(",") if w.strip()]
    args.epochs = args.epochs if args.epochs is not None else (1 if args.quick else 3)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def log(message: str) -> None:
        print(f"[bench-rest {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="batchwise-bench-rest-") as tmp:
        work = Path(tmp)
        version_dir = args.version_dir
        if version_dir is None:
            log(f"building the MNIST CNN repository ({args.epochs} epochs)")
            built = subprocess.run(
                [sys.executable, "-m", "loadtests.mnist_model", "--repository", str(work / "repo"), "--epochs",
                 str(args.epochs)], cwd=servers.ROOT, capture_output=True, text=True, check=True,
            )  # fmt: skip
            version_dir = Path(json.loads(built.stdout.strip().splitlines()[-1])["version_dir"])
        result = {**report.environment(sys.argv), **RestBench(args, work, log).run(version_dir)}
        result["command"] = "python -m loadtests.bench_rest " + " ".join(sys.argv[1:])
    args.results_dir.mkdir(parents=True, exist_ok=True)
    path = args.results_dir / f"{time.strftime('%Y-%m-%d-%H%M')}-{report.machine_name()}-rest.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(render(result))
    print(f"\nresults: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
