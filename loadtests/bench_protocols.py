"""The doors side by side: one server, one model, one row per request, each protocol at 64 clients.

Every door's request is serialized once (loadtests/payloads.py) and sent by the same load
generator (loadtests/loadgen.py) to the same server, in ABBA order (tfserving, v2, v2, tfserving,
...) so that drift over the run cancels out of the ratio. Target: v2 gRPC ModelInfer throughput
>= 0.9x TF Serving gRPC Predict's. `measure()` is `make bench`'s protocols phase (the REST doors add
their points here); run alone, it builds the MNIST CNN, serves it and runs only this phase:

    python -m loadtests.bench_protocols [--quick] [--rounds N] [--duration-s S]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from loadtests import payloads, servers

CONCURRENCY = 64
TARGETS = {"v2_grpc_over_tfserving_grpc_64": ("v2_grpc", "tfserving_grpc", 0.9)}


def measure(bench, server: servers.RunningServer, version_dir: Path, request: Path, rounds: int | None = None) -> dict:
    """`rounds` ABBA rounds (default 2, 1 with --quick) of closed-loop points at 64 clients per door on `server`.

    `bench` is a loadtests.bench.Bench (its `point`, `log`, `work`, `args`); `request` the TF Serving Predict file.
    """
    rounds = rounds or (1 if bench.args.quick else 2)
    from loadtests.bench import sample_row

    _card, input_name, row = sample_row(version_dir)
    v2_request = bench.work / "protocols-v2-request.bin"
    v2_request.write_bytes(payloads.v2_infer_request(version_dir.parent.name, input_name, row))
    doors = {"tfserving_grpc": (request, payloads.PREDICT_METHOD), "v2_grpc": (v2_request, payloads.V2_INFER_METHOD)}
    points: dict[str, list[dict]] = {name: [] for name in doors}
    first, second = list(doors)
    for name in (first, second, second, first) * rounds:
        payload, method = doors[name]
        points[name].append(bench.point(server, payload, CONCURRENCY, method=method))
        bench.log(f"protocol {name:15s} N={CONCURRENCY} {_describe(points[name][-1])}")
    return {"concurrency": CONCURRENCY, "rounds": rounds, "load_average": list(os.getloadavg()), "points": points}


def mean_rps(points: list[dict]) -> float | None:
    """Mean throughput of error-free points (a point with errors is not a throughput figure)."""
    clean = [p["throughput_rps"] for p in points if not p["errors"]]
    return sum(clean) / len(clean) if clean and len(clean) == len(points) else None


def ratios(protocols: dict) -> dict:
    """Each target as {value, target, comparison, met} (value None when a door was not measured cleanly)."""
    figures = {}
    for key, (door, baseline, target) in TARGETS.items():
        ours, base = mean_rps(protocols["points"].get(door, [])), mean_rps(protocols["points"].get(baseline, []))
        value = ours / base if ours is not None and base else None
        figures[key] = {
            "value": value,
            "target": target,
            "comparison": ">=",
            "met": None if value is None else value >= target,
        }
    return figures


def render(protocols: dict) -> str:
    """A markdown table: each door's mean throughput, its latency and server CPU per request, then the ratios."""
    rows = [
        "| door | points | mean req/s | p50 ms | p99 ms | server CPU us/req | errors |",
        "|---|---|---|---|---|---|---|",
    ]
    for door, points in protocols["points"].items():
        rps = mean_rps(points)
        p50 = sum(p["p50_ms"] or 0 for p in points) / len(points)
        p99 = sum(p["p99_ms"] or 0 for p in points) / len(points)
        cpu = [p["server_cpu_cores"] / p["throughput_rps"] * 1e6 for p in points if p.get("throughput_rps")]
        errors = sum(sum(p["errors"].values()) for p in points)
        rows.append(
            f"| {door} | {len(points)} | {rps or 0:,.0f} | {p50:.2f} | {p99:.2f} | "
            f"{sum(cpu) / len(cpu) if cpu else 0:,.0f} | {errors} |"
        )
    for key, figure in ratios(protocols).items():
        met = {True: "met", False: "MISSED", None: "n/a"}[figure["met"]]
        value = "n/a" if figure["value"] is None else f"{figure['value']:.3f}"
        rows.append(f"\n{key}: {value} (target >= {figure['target']}) {met}")
    load = protocols.get("load_average", [0.0])[0]
    title = f"Protocols at {protocols['concurrency']} clients, {protocols['rounds']} ABBA rounds (load {load:.2f})"
    return title + "\n" + "\n".join(rows)


def _describe(point: dict) -> str:
    return (
        f"{point['throughput_rps']:,.0f} req/s p50 {point['p50_ms'] or 0:.2f} ms p99 {point['p99_ms'] or 0:.2f} ms "
        f"server CPU {point.get('server_cpu_cores', 0):.2f} cores errors={point['errors']}"
    )


def main(argv: list[str] | None = None) -> int:
    """Standalone: build the MNIST CNN, serve it (batched SavedModel), run the protocols phase, print the table."""
    from loadtests.bench import Bench, parse_args

    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--json", type=Path, help="also write the phase's result here")
    own, rest = parser.parse_known_args(argv)
    args = parse_args(rest)
    with tempfile.TemporaryDirectory(prefix="batchwise-protocols-") as tmp:
        bench = Bench(args, Path(tmp))
        version_dir = bench.build_model()
        request, _response, probe = bench.write_payloads(version_dir, "mnist")
        with servers.ServerSet() as group:
            group.add(bench.ours("batched", version_dir.parents[1], ["--runtime.variant", "savedmodel"], {}))
            group.wait(probe, payloads.PREDICT_METHOD, model=version_dir.parent.name)
            if "batched" not in group.ready:
                raise RuntimeError(group.failed["batched"])
            result = measure(bench, group.ready["batched"], version_dir, request, own.rounds)
    if own.json:
        own.json.write_text(json.dumps(result, indent=1) + "\n")
    print(render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
