"""`make bench`: the whole benchmark in one run, side by side, with the ceilings that bound any server.

Phases (every server in its own process, the load generator in another):
  1. build the MNIST CNN repository (SavedModel + four TFLite variants + card) in a temp folder;
  2. compute ceiling: the model in-process (SavedModel by batch size, each LiteRT variant);
  3. concurrency sweep, points interleaved across configurations: framework ceiling (fixed
     response, no model), our server with batching on, and with batching off;
  4. metrics on vs off at 64 clients, alternated;
  5. per-variant table: each variant served at 64 clients (and the trainer's digits model when
     --digits-repo has one);
  6. overload: open-loop arrivals at 0.5x, 0.8x, 2x and again 0.5x the measured saturation rate;
  7. peer: Seldon MLServer 1.7 (its own venv, adaptive batching set like ours) serving the same
     SavedModel, one MLServer per parallel_workers value (default 0 and 1), points interleaved with
     our batched server at 1, 8, 32 and 64 clients; the targets are read against MLServer's best.
  8. protocols: v2 gRPC ModelInfer vs TF Serving gRPC Predict on the batched server at 64 clients (bench_protocols.py).
  9. REST (bench_rest.py, servers of its own): TF Serving JSON vs MLServer's v2 REST, gRPC with HTTP idle vs off.
Writes loadtests/results/<date>-<machine>.json and .png (a later run that day adds -<HHMM>),
and prints the tables and ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from contract.card import load_card
from loadtests import bench_policy, bench_protocols, bench_rest, bench_workers, loadgen, payloads, plot, report, servers
from loadtests.servers import RunningServer

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
VARIANTS = ("savedmodel", "float32", "float16", "dynamic", "int8")
OVERLOAD_FACTORS = (0.5, 0.8, 2.0, 0.5)
PEER_CONCURRENCY = (1, 8, 32, 64)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m loadtests.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 s points, fewer concurrencies and variants")
    parser.add_argument("--duration-s", type=float, help="timed window per point (default 10, quick 2)")
    parser.add_argument("--warmup-s", type=float, help="warm-up per point (default 2, quick 0.5)")
    parser.add_argument("--concurrency", help="closed-loop points (default 1,8,32,64,128; quick 1,8,64)")
    parser.add_argument("--channels", type=int, default=loadgen.DEFAULT_CHANNELS, help="HTTP/2 connections")
    parser.add_argument("--variants", help=f"served per-variant table (default {','.join(VARIANTS)})")
    parser.add_argument("--epochs", type=int, help="training epochs of the MNIST CNN (0 = untrained)")
    parser.add_argument("--digits-repo", type=Path, help="a repository with the trainer's digits model to use")
    parser.add_argument("--digits", action=argparse.BooleanOptionalAction, default=None,
                        help="train the trainer's digits model (python -m models) and add its variant table "
                             "(default: on, off with --quick; --digits-repo uses an existing one instead)")
    parser.add_argument("--peer", choices=("mlserver", "none"),
                        help="peer server to compare with (default mlserver; none with --quick)")
    parser.add_argument("--peer-workers", default="0,1",
                        help="MLServer parallel_workers values, comma separated: one MLServer each, all measured")
    parser.add_argument("--peer-rounds", type=int, default=3,
                        help="extra interleaved pairs at 64 clients after the peer sweep (ABBA order with it)")
    parser.add_argument("--server-arg", action="append", default=[], help="extra flag for our server (repeat)")
    parser.add_argument("--rest", action=argparse.BooleanOptionalAction, default=True, help="REST (bench_rest.py)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    parser.add_argument("--machine", help="machine name in the file name (default <nproc>cpu-<hostname>)")
    parser.add_argument("--raw-latencies", action="store_true", help="keep every latency in the JSON")
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument("--only", choices=("policy",), help="run only this section (loadtests/bench_policy.py)")
    parser.add_argument("--workers", action=argparse.BooleanOptionalAction, default=True,
                        help="the workers section: server.workers 2 vs 1 under h2load (loadtests/bench_workers.py)")
    bench_workers.add_arguments(parser)
    args = parser.parse_args(argv)
    quick = args.quick
    args.duration_s = args.duration_s or (2.0 if quick else 10.0)
    args.warmup_s = args.warmup_s if args.warmup_s is not None else (0.5 if quick else 2.0)
    args.concurrency = [int(n) for n in (args.concurrency or ("1,8,64" if quick else "1,8,32,64,128")).split(",")]
    args.variants = (args.variants or ("savedmodel,int8" if quick else ",".join(VARIANTS))).split(",")
    args.epochs = args.epochs if args.epochs is not None else (1 if quick else 3)
    args.digits = args.digits if args.digits is not None else not quick
    args.peer = args.peer or ("none" if quick else "mlserver")
    args.peer_workers = [int(w) for w in args.peer_workers.split(",")]
    return args


def sample_row(version_dir: Path) -> tuple[dict, str, np.ndarray]:
    """(model card, input name, its first sample row as float32 with a batch axis of 1): every payload's row."""
    card = load_card(version_dir).raw
    (input_name,) = card["samples"]["inputs"]
    return card, input_name, np.asarray(card["samples"]["inputs"][input_name][:1], dtype=np.float32)


class Bench:
    """One benchmark run: its settings, its scratch folder and everything measured so far."""

    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.result: dict = {}

    # -- plumbing --------------------------------------------------------------------------

    def log(self, message: str) -> None:
        print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    def run_python(self, module: str, *argv: str) -> dict:
        """`python -m module argv` in the repository root; its stdout's last line as JSON."""
        import subprocess

        proc = subprocess.run([sys.executable, "-m", module, *argv], cwd=servers.ROOT, capture_output=True,
                              text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"{module} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        return json.loads(proc.stdout.strip().splitlines()[-1])

    def point(self, server: RunningServer, payload: Path, concurrency: int, method: str = payloads.PREDICT_METHOD):
        """One closed-loop point against `server`, with the server's CPU use over the point."""
        spec = self.load_spec(server, payload, concurrency=[concurrency], method=method)
        cpu_before, wall_before = server.cpu_s(), time.monotonic()
        (result,) = loadgen.run_in_subprocess(spec)
        result["server_cpu_cores"] = (server.cpu_s() - cpu_before) / (time.monotonic() - wall_before)
        return result

    def load_spec(self, server: RunningServer, payload: Path, **points) -> dict:
        a = self.args
        return {"target": server.target, "method": payloads.PREDICT_METHOD, "payload_file": str(payload),
                "duration_s": a.duration_s, "warmup_s": a.warmup_s, "timeout_s": 30.0, "channels": a.channels,
                "raw": a.raw_latencies, **points}

    def ours(self, name: str, repository: Path, extra: list[str], env: dict[str, str]) -> RunningServer:
        args = ["--metrics.port", str(servers.free_port()), *self.args.server_arg, *extra]
        self.result.setdefault("server_commands", {})[name] = {"args": args, "env": env}
        return servers.start_ours(name, repository, args, env=env, log_dir=self.work)

    # -- phases ----------------------------------------------------------------------------

    def build_model(self) -> Path:
        self.log(f"building the MNIST CNN repository ({self.args.epochs} epochs)")
        built = self.run_python("loadtests.mnist_model", "--repository", str(self.work / "repo"),
                                "--epochs", str(self.args.epochs))
        self.result["model_build_s"] = built["build_s"]
        return Path(built["version_dir"])

    def write_payloads(self, version_dir: Path, prefix: str) -> tuple[Path, Path, bytes]:
        """(request file, fixed-response file, request bytes) for one row of the card's samples."""
        card, input_name, row = sample_row(version_dir)
        request = payloads.predict_request(version_dir.parent.name, {input_name: row})
        outputs = {k: np.asarray(v[:1], dtype=np.float32) for k, v in card["samples"]["outputs"].items()}
        response = payloads.predict_response(version_dir.parent.name, int(version_dir.name), outputs)
        (self.work / f"{prefix}-request.bin").write_bytes(request)
        (self.work / f"{prefix}-response.bin").write_bytes(response)
        return self.work / f"{prefix}-request.bin", self.work / f"{prefix}-response.bin", request

    def ceilings(self, version_dir: Path, sizes: list[int], tflite_sizes: str = "1,32") -> dict:
        """SavedModel with the server's TF threads and with TF's default; LiteRT at 1 and 2 threads."""
        runtime = report.server_settings(self.args.server_arg).runtime
        timing = ["--seconds", "0.2" if self.args.quick else "0.6", "--repeats", "2" if self.args.quick else "3"]
        self.log(f"compute ceiling in-process: SavedModel at {sizes}, LiteRT variants at {tflite_sizes}")
        ours = self.run_python(
            "loadtests.ceilings", "--version-dir", str(version_dir), "--batch-sizes", ",".join(map(str, sizes)),
            "--tflite-batch-sizes", tflite_sizes, "--tflite-threads", "1,2",
            "--tf-threads", f"{runtime.tf_intra_op_threads},{runtime.tf_inter_op_threads}", *timing,
        )
        default = self.run_python(
            "loadtests.ceilings", "--version-dir", str(version_dir), "--batch-sizes", ",".join(map(str, sizes[-2:])),
            "--tflite-threads", "", "--tf-threads", "0,0", *timing,
        )
        if "savedmodel" in default:
            ours["savedmodel@tf-default-threads"] = default["savedmodel"]
        return ours

    def start_servers(self, group: servers.ServerSet, repository: Path, response: Path) -> None:
        """Every server of the main run, started at once so that their start-ups overlap."""
        savedmodel = ["--runtime.variant", "savedmodel"]
        event_loop = report.server_settings(self.args.server_arg).server.event_loop
        group.add(servers.start_fixed("framework_ceiling", response, self.work, event_loop))
        group.add(self.ours("batched", repository, savedmodel, {}))
        group.add(self.ours("unbatched", repository, savedmodel, {"BATCHWISE_BATCHING__ENABLED": "false"}))
        # The on/off pair: both fresh and idle until their phase, so they differ only in the setting
        # (the batched server has served the whole sweep by then, which made it measurably slower).
        group.add(self.ours("metrics_on", repository, savedmodel, {}))
        group.add(self.ours("metrics_off", repository, savedmodel, {"BATCHWISE_METRICS__ENABLED": "false"}))
        for variant in self.args.variants:
            if variant != "savedmodel":  # the batched server serves the SavedModel
                group.add(self.ours(f"variant-{variant}", repository, ["--runtime.variant", variant], {}))

    def sweep(self, group: servers.ServerSet, request: Path) -> dict:
        """Framework ceiling, batched and unbatched; points interleaved by concurrency."""
        names = ("framework_ceiling", "batched", "unbatched")
        sweep: dict[str, list[dict]] = {name: [] for name in names}
        for n in self.args.concurrency:
            for name in names:
                point = self.point(group.ready[name], request, n)
                sweep[name].append(point)
                self.log(f"{name:18s} N={n:<4d} {report.describe_point(point)}")
        return sweep

    def metrics_on_off(self, group: servers.ServerSet, request: Path) -> dict:
        """Issue 6: two fresh servers of the batched configuration, metrics on and off, at 64 clients in ABBA
        order (on, off, off, on, ...) so that drift over the run cancels; plus the metrics hot path's CPU per
        request timed in-process (loadtests/metrics_cost.py)."""
        pairs: dict[str, list[dict]] = {"on": [], "off": []}
        order = ("on", "off", "off", "on") * (1 if self.args.quick else 2)
        for key in order:
            pairs[key].append(self.point(group.ready[f"metrics_{key}"], request, 64))
            self.log(f"metrics {key:3s} N=64   {report.describe_point(pairs[key][-1])}")
        pairs["hot_path"] = self.run_python("loadtests.metrics_cost")
        self.log(f"metrics hot path in-process: {pairs['hot_path']['total_us']:.1f} us per request")
        return pairs

    def overload(self, batched: RunningServer, request: Path, batched_points: list[dict]) -> dict:
        """Issue 10: open-loop arrivals around the saturation rate measured in the sweep."""
        saturation = max(p["throughput_rps"] for p in batched_points)
        rates = [round(saturation * f, 1) for f in OVERLOAD_FACTORS]
        seconds = min(self.args.duration_s, 2.0) if self.args.quick else 5.0
        self.log(f"overload: open loop at {rates} requests/s ({seconds} s each; saturation {saturation:.0f}/s)")
        spec = self.load_spec(batched, request, rates=rates, duration_s=seconds, timeout_s=10.0)
        phases = loadgen.run_in_subprocess(spec)
        for factor, phase in zip(OVERLOAD_FACTORS, phases, strict=True):
            phase["factor"] = factor
            self.log(f"open loop {factor:.1f}x: {report.describe_open(phase)}")
        # What refusing in Python would cost: calls answered with an error (unknown model) at 64 clients.
        unknown = self.work / "unknown-model-request.bin"
        unknown.write_bytes(payloads.renamed_predict_request(request.read_bytes(), "no-such-model"))
        refused = self.point(batched, unknown, 64)
        refused["refused_rps"] = sum(refused["errors"].values()) / refused["duration_s"]
        self.log(f"refusal path N=64: {refused['refused_rps']:.0f}/s refused, errors={refused['errors']}")
        return {"saturation_rps": saturation, "seconds_per_phase": seconds, "phases": phases,
                "refusal_path_64": refused}

    def peer(self, batched: RunningServer, version_dir: Path, request: Path) -> dict:
        """Issue 8: MLServer with adaptive batching set like ours, one server per parallel_workers value.

        Every MLServer configuration is up at once and measured interleaved with our batched server, so
        the targets can be read against MLServer's best configuration in this run, not one we picked.
        """
        from loadtests import peer_mlserver

        batching = report.server_settings(self.args.server_arg).batching
        workers = {f"mlserver-w{w}": w for w in self.args.peer_workers}
        peers: dict[str, RunningServer] = {}
        v2_request = self.work / "mnist-v2-request.bin"  # one request for every MLServer: same model, same name
        _card, input_name, row = sample_row(version_dir)
        v2_request.write_bytes(payloads.v2_infer_request(peer_mlserver.served_name(version_dir), input_name, row))
        try:
            for name, n_workers in workers.items():
                self.log(f"starting MLServer (max_batch_size {batching.max_batch_size}, max_batch_time "
                         f"{batching.batch_timeout_ms} ms, parallel_workers {n_workers}); builds its venv on first use")
                port = servers.free_port()
                proc = peer_mlserver.start_mlserver(
                    version_dir, port, max_batch_size=batching.max_batch_size,
                    max_batch_time_s=batching.batch_timeout_ms / 1000, parallel_workers=n_workers,
                )
                peers[name] = RunningServer(name, f"127.0.0.1:{port}", proc, proc.workdir / "mlserver.log")
            points, rounds = self.peer_points(batched, request, peers, v2_request)
        finally:
            for running in peers.values():
                peer_mlserver.stop(running.proc)
        return {"server": "mlserver", "version": peer_mlserver.installed_version(), "parallel_workers": workers,
                "max_batch_size": batching.max_batch_size, "max_batch_time_ms": batching.batch_timeout_ms,
                "batchwise_batch_idle_timeout_ms": batching.batch_idle_timeout_ms, "points": points,
                "rounds_64": rounds}

    def peer_points(
        self, batched: RunningServer, request: Path, peers: dict[str, RunningServer], v2_request: Path
    ) -> tuple[dict[str, list[dict]], dict[str, list[dict]]]:
        """The peer sweep (1, 8, 32, 64 clients) and the extra rounds at 64, each point interleaved across servers."""
        names = ["batchwise", *peers]
        points: dict[str, list[dict]] = {name: [] for name in names}
        rounds: dict[str, list[dict]] = {name: [] for name in names}

        def measure(name: str, n: int, into: dict[str, list[dict]]) -> None:
            if name == "batchwise":
                into[name].append(self.point(batched, request, n))
            else:  # its workers are other processes: no CPU figure
                spec = self.load_spec(peers[name], v2_request, concurrency=[n], method=payloads.V2_INFER_METHOD)
                into[name] += loadgen.run_in_subprocess(spec)
            self.log(f"peer {name:12s} N={n:<4d} {report.describe_point(into[name][-1])}")

        for n in PEER_CONCURRENCY:
            for name in names:
                measure(name, n, points)
        # More rounds at 64, the target's point, in reversed order every other time (the sweep's round is
        # batchwise first): with the sweep's round that makes ABBA order, so drift over the run cancels.
        for i in range(self.args.peer_rounds):
            for name in names[::-1] if i % 2 == 0 else names:
                measure(name, 64, rounds)
        return points, rounds

    def variants(self, group: servers.ServerSet, model: str, request: Path, savedmodel: RunningServer) -> dict:
        """Served throughput at 64 clients for each variant's server (refused variants say why).

        Each TFLite variant is paired with a point of `savedmodel` (a server of the SavedModel in the
        same configuration) measured right next to it, in alternating order: the variant's point
        holds it as `savedmodel_adjacent`, so the served ratio is side by side, not minutes apart.
        The SavedModel row shows the pair measured with int8 (the issue's comparison).
        """
        served: dict[str, dict] = {}
        for i, variant in enumerate(v for v in self.args.variants if v != "savedmodel"):
            name = f"variant-{variant}"
            if name in group.failed:
                served[variant] = {"error": group.failed[name][:500]}
                continue
            if name not in group.ready:
                continue
            pair = [(variant, group.ready[name]), ("savedmodel", savedmodel)]
            points = {label: self.point(server, request, 64) for label, server in (pair if i % 2 == 0 else pair[::-1])}
            served[variant] = {**points[variant], "savedmodel_adjacent": points["savedmodel"]}
            if variant == "int8" or "savedmodel" not in served:
                served["savedmodel"] = points["savedmodel"]
            self.log(f"{model} {variant:10s} N=64   {report.describe_point(points[variant])}; "
                     f"savedmodel next to it {points['savedmodel']['throughput_rps']:.0f}/s")
        return served

    def main_run(self, version_dir: Path, request: Path, response: Path, probe: bytes) -> None:
        """Phases 3-6 against one set of servers, all up at once."""
        with servers.ServerSet() as group:
            self.log("starting the servers (framework ceiling, batched, unbatched, metrics off, variants)")
            self.start_servers(group, version_dir.parents[1], response)
            group.wait(probe, payloads.PREDICT_METHOD, model=version_dir.parent.name)
            for name in ("framework_ceiling", "batched", "unbatched", "metrics_on", "metrics_off"):
                if name not in group.ready:
                    raise RuntimeError(group.failed[name])
            self.result["sweep"] = self.sweep(group, request)
            self.result["metrics"] = self.metrics_on_off(group, request)
            served = self.variants(group, "mnist_cnn", request, group.ready["metrics_on"])  # fresh, batched config
            self.result["overload"] = self.overload(group.ready["batched"], request, self.result["sweep"]["batched"])
            self.result["protocols"] = bench_protocols.measure(self, group.ready["batched"], version_dir, request)
            if self.args.peer == "mlserver":
                self.result["peer"] = self.peer(group.ready["batched"], version_dir, request)
        self.result["variants"] = report.variant_table(version_dir, self.result["compute_ceiling"], served)

    def train_digits(self) -> Path:
        """Train and publish the trainer's digits recipe into the scratch folder; returns the repository."""
        import subprocess

        repo = self.work / "digits-repo"
        self.log("training the trainer's digits model (python -m models train digits)")
        proc = subprocess.run([sys.executable, "-m", "models", "train", "digits", "--repository", str(repo)],
                              cwd=servers.ROOT, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"training the digits model failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        return repo

    def digits(self, repo: Path) -> None:
        """The trainer's digits model (latest version under `repo`): ceilings and each variant served at 64."""
        versions = sorted((p for p in (repo / "digits").glob("*") if p.name.isdigit()), key=lambda p: int(p.name))
        if not versions:
            self.log(f"no digits model under {repo}; skipping it")
            return
        version_dir = versions[-1]
        request, _response, probe = self.write_payloads(version_dir, "digits")
        ceiling = self.ceilings(version_dir, [1, 32])
        with servers.ServerSet() as group:
            for variant in dict.fromkeys(["savedmodel", *self.args.variants]):  # the SavedModel: the pairs' baseline
                group.add(self.ours(f"variant-{variant}", repo, ["--runtime.variant", variant], {}))
            group.wait(probe, payloads.PREDICT_METHOD, model="digits")
            if "variant-savedmodel" not in group.ready:
                raise RuntimeError(f"the digits SavedModel server failed: {group.failed.get('variant-savedmodel')}")
            served = self.variants(group, "digits", request, group.ready["variant-savedmodel"])
        self.result["digits"] = report.variant_table(version_dir, ceiling, served)

    def run(self) -> dict:
        self.result.update(report.environment(sys.argv))
        version_dir = self.build_model()
        request, response, probe = self.write_payloads(version_dir, "mnist")
        if self.args.only == "policy":
            self.result["policy"] = bench_policy.measure(self, version_dir, request, probe)
            self.result["load_average_end"] = list(os.getloadavg())
            return self.result
        max_batch = report.server_settings(self.args.server_arg).batching.max_batch_size
        # Alone on the machine: before any server starts.
        self.result["compute_ceiling"] = self.ceilings(version_dir, sorted({1, 8, 32, max_batch}))
        self.main_run(version_dir, request, response, probe)
        self.result["policy"] = bench_policy.measure(self, version_dir, request, probe)
        if self.args.workers:
            workers_args = bench_workers.section_args(self.args)
            self.result["workers"] = bench_workers.run_section(workers_args, self.work, version_dir.parents[1], request,
                                                               log=self.log)
        if self.args.digits_repo:
            self.digits(self.args.digits_repo)
        elif self.args.digits:
            self.digits(self.train_digits())
        self.result["load_average_end"] = list(os.getloadavg())
        self.result["settings"] = report.run_settings(self.args)
        self.result["ratios"] = report.ratios(self.result, report.server_settings(self.args.server_arg))
        if self.args.rest:  # last, on fresh servers of its own (issue 18's REST and HTTP-idle points)
            self.result["rest"] = bench_rest.RestBench(self.args, self.work, self.log).run(version_dir)
            self.result["ratios"].update(self.result["rest"]["ratios"])
        return self.result


def results_stem(results_dir: Path, machine: str, now: time.struct_time) -> str:
    """`<date>-<machine>`; a later run on the same day gets `-<HHMM>` added, so it never overwrites the first."""
    stem = f"{time.strftime('%Y-%m-%d', now)}-{machine}"
    if (results_dir / f"{stem}.json").exists():
        stem += time.strftime("-%H%M", now)
    return stem


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="batchwise-bench-") as tmp:
        bench = Bench(args, Path(tmp))
        started_s = time.monotonic()
        result = bench.run()
        result["wall_s"] = round(time.monotonic() - started_s, 1)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    stem = results_stem(args.results_dir, args.machine or report.machine_name(), time.localtime())
    json_path = args.results_dir / f"{stem}.json"
    json_path.write_text(json.dumps(result, indent=1) + "\n")
    if "sweep" in result:
        print(report.render(result))
    if "policy" in result:
        print(bench_policy.render(result["policy"]))
    if "rest" in result:
        print("\n" + bench_rest.render(result["rest"]))
    if "workers" in result:
        print(bench_workers.render(result["workers"]))
    if not args.no_plot and "sweep" in result:
        plot.plot(result, args.results_dir / f"{stem}.png")
    print(f"\nresults: {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
