"""Benchmark bookkeeping: the machine and versions, derived ratios and targets, printed tables and the plot."""

from __future__ import annotations

import argparse
import os
import platform
import socket
import subprocess
import time
from importlib import metadata
from pathlib import Path

from service.settings import Settings, load_settings

PACKAGES = ("grpcio", "protobuf", "numpy", "tensorflow", "ai-edge-litert", "keras", "matplotlib", "uvloop")


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine_name() -> str:
    return f"{len(os.sched_getaffinity(0))}cpu-{socket.gethostname()}"


def environment(argv: list[str]) -> dict:
    """Date, machine, versions, command and the load average at the start."""
    versions = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    root = Path(__file__).resolve().parents[1]
    git = subprocess.run(
        ["git", "describe", "--always", "--dirty"], cwd=root, capture_output=True, text=True, check=False
    )
    versions["batchwise_commit"] = git.stdout.strip() or None
    return {
        "schema_version": 1,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"nproc": len(os.sched_getaffinity(0)), "cpu_count": os.cpu_count(), "cpu_model": cpu_model(),
                    "hostname": socket.gethostname(), "platform": platform.platform()},
        "versions": versions,
        "command": "python -m loadtests.bench " + " ".join(argv[1:]),
        "load_average_start": list(os.getloadavg()),
    }


def server_settings(server_args: list[str]) -> Settings:
    """The settings our server runs with in the benchmark (defaults + the extra flags)."""
    return load_settings(list(server_args))


def run_settings(args: argparse.Namespace) -> dict:
    return {"quick": args.quick, "duration_s": args.duration_s, "warmup_s": args.warmup_s,
            "concurrency": args.concurrency, "channels": args.channels, "variants": args.variants,
            "epochs": args.epochs, "server_args": args.server_arg}


def describe_point(point: dict) -> str:
    if "error" in point:
        return f"failed: {point['error'][:120]}"
    errors = f" errors={point['errors']}" if point["errors"] else ""
    return (f"{point['throughput_rps']:7.0f}/s p50={_ms(point['p50_ms'])} p99={_ms(point['p99_ms'])}"
            f"{_generator(point)}{errors}")


def describe_open(phase: dict) -> str:
    return (f"offered {phase['offered_rps']:.0f}/s sent {phase['sent_rps']:.0f}/s "
            f"admitted {phase['throughput_rps']:.0f}/s rejected {phase['rejected_rps']:.0f}/s "
            f"cancelled {phase.get('cancelled_rps') or 0:.0f}/s "
            f"p99(admitted)={_ms(phase['p99_ms'])}{_generator(phase)} errors={phase['errors']}")


def _generator(point: dict) -> str:
    cores = point.get("client_cpu_cores")
    return "" if cores is None else f" generator={cores:.2f} cores"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}ms"


def _at(points: list[dict], concurrency: int) -> dict | None:
    return next((p for p in points if p.get("concurrency") == concurrency), None)


def _rate(rates: list[dict] | None, batch: int) -> float | None:
    return next((r["rows_per_s"] for r in rates or [] if r["batch"] == batch), None)


def variant_table(version_dir: Path, ceiling: dict, served: dict) -> dict:
    """Per variant: file size, accuracy from the card, in-process rows/s at batch 1 and 32, served at 64."""
    import json

    card = json.loads((version_dir / "model_card.json").read_text())
    rows = {}
    for variant, entry in card.get("variants", {}).items():
        if variant == "savedmodel":
            files = [p for p in version_dir.rglob("*") if p.is_file() and "tflite" not in p.parts]
            size = sum(p.stat().st_size for p in files if p.name != "model_card.json")
        else:
            path = version_dir / "tflite" / f"{variant}.tflite"
            size = path.stat().st_size if path.exists() else None
        point = served.get(variant) or {}
        alternates = [k for k in ceiling if k.startswith(f"{variant}@")]
        rows[variant] = {
            "published": entry.get("published"), "size_bytes": size,
            "accuracy": entry.get("accuracy"), "mse": entry.get("mse"),
            "inproc_b1_rows_s": _rate(ceiling.get(variant), 1), "inproc_b32_rows_s": _rate(ceiling.get(variant), 32),
            "inproc_b32_best_rows_s": max(
                (r for r in (_rate(ceiling.get(k), 32) for k in [variant, *alternates]) if r), default=None
            ),
            "served_64": point or None,
        }
    return {"model": card.get("name"), "version": card.get("version"), "rows": rows}


def ratios(result: dict, settings: Settings) -> dict:
    """The issue targets as figures: value, target and whether it was met (None when not measured)."""
    sweep = result["sweep"]
    batched, unbatched, fixed = (_at(sweep[k], 64) for k in ("batched", "unbatched", "framework_ceiling"))
    max_batch = settings.batching.max_batch_size
    sm = result["compute_ceiling"].get("savedmodel", [])
    compute = max((r["rows_per_s"] for r in sm if r["batch"] <= max_batch), default=None)
    max_batch_ms = next((r["ms_per_batch"] for r in sm if r["batch"] == max_batch), None)
    min_ceiling = min(compute, fixed["throughput_rps"]) if compute and fixed else None
    p8 = _at(sweep["batched"], 8)
    bound_ms = 2 * settings.batching.batch_timeout_ms + max_batch_ms if max_batch_ms is not None else None
    metrics = result.get("metrics", {})
    on = [p["throughput_rps"] for p in metrics.get("on", [])]
    off = [p["throughput_rps"] for p in metrics.get("off", [])]
    figures = {
        "framework_ceiling_cpu_us_per_req_64": fixed and cpu_us_per_request(fixed),
        "batched_cpu_us_per_req_64": batched and cpu_us_per_request(batched),
        "compute_ceiling_rows_s": compute, "framework_ceiling_64_rps": fixed and fixed["throughput_rps"],
        "min_ceiling_rps": min_ceiling, "max_batch_compute_ms": max_batch_ms,
        "batched_over_unbatched_64": _target(_div(batched, unbatched), 2.0),
        "batched_over_min_ceiling_64": _target(_div(batched and batched["throughput_rps"], min_ceiling), 0.8),
        "p99_at_8_ms": _target(p8 and p8["p99_ms"], bound_ms, at_most=True),
        "metrics_on_over_off_64": _target(_div(sum(on) / len(on) if on else None,
                                               sum(off) / len(off) if off else None), 0.95),
        "metrics_hot_path_us_per_req": metrics.get("hot_path", {}).get("total_us"),
        "metrics_hot_path_share_of_server_cpu": _target(_hot_path_share(metrics), 0.05, at_most=True),
    }
    refused = result.get("overload", {}).get("refusal_path_64")
    if refused:
        figures["refusal_path_64_rps"] = refused["refused_rps"]
        figures["refusal_path_cpu_us_per_call_64"] = cpu_us_per_request(
            {**refused, "throughput_rps": refused["refused_rps"]})
    if "peer" in result:
        figures.update(peer_ratios(result["peer"]))
    if "protocols" in result:
        from loadtests.bench_protocols import ratios as protocol_ratios  # (it imports bench, which imports us)

        figures.update(protocol_ratios(result["protocols"]))
    figures.update(variant_ratios(result["variants"]["rows"], ""))
    if "digits" in result:
        figures.update(variant_ratios(result["digits"]["rows"], "digits_"))
    return figures


def _hot_path_share(metrics: dict) -> float | None:
    """The metrics hot path's in-process CPU per request over the metrics-on server's CPU per request."""
    cpu = [c for c in (cpu_us_per_request(p) for p in metrics.get("on", [])) if c]
    total = metrics.get("hot_path", {}).get("total_us")
    return total / (sum(cpu) / len(cpu)) if cpu and total else None


def peer_configs(peer: dict) -> dict[str, int]:
    """The peer's configurations measured in the run: points key -> parallel_workers (old files: one, "mlserver")."""
    workers = peer["parallel_workers"]
    return dict(workers) if isinstance(workers, dict) else {"mlserver": workers}


def peer_ratios(peer: dict) -> dict:
    """Issue 8's targets: throughput >= 3x MLServer's at 64 with a lower p99; p50 at 1 client <= half.

    Each target is read against MLServer's best configuration of the run for that figure: the highest
    throughput at 64, the lowest p99 at 64, the lowest p50 at 1 client. At 64 clients the figures pool
    the sweep's round with the extra rounds (`rounds_64`): mean throughput over mean throughput, mean
    p99 over mean p99. With several configurations each one's throughput ratio is listed too, and the
    pair-by-pair ratios are against the fastest.
    """
    ours = peer["points"]["batchwise"]
    rounds = peer.get("rounds_64", {})

    def at_64(name: str) -> list[dict]:
        return [p for p in [_at(peer["points"][name], 64), *rounds.get(name, [])] if p]

    o64, o1 = at_64("batchwise"), _at(ours, 1)
    configs = {name: at_64(name) for name in peer_configs(peer)}
    fastest = max(configs, key=lambda name: _mean(configs[name], "throughput_rps") or 0.0)
    p99 = min((m for m in (_mean(points, "p99_ms") for points in configs.values()) if m), default=None)
    p50 = min((p["p50_ms"] for name in configs if (p := _at(peer["points"][name], 1))), default=None)
    figures = {
        "over_mlserver_throughput_64": _target(
            _div(_mean(o64, "throughput_rps"), _mean(configs[fastest], "throughput_rps")), 3.0),
        "over_mlserver_p99_64": _target(_div(_mean(o64, "p99_ms"), p99), 1.0, at_most=True),
        "over_mlserver_p50_1": _target(_div((o1 or {}).get("p50_ms"), p50), 0.5, at_most=True),
    }
    if len(configs) > 1:
        for name, points in configs.items():
            figures[f"over_{name}_throughput_64"] = _div(_mean(o64, "throughput_rps"), _mean(points, "throughput_rps"))
    if len(o64) > 1:
        figures["over_mlserver_throughput_64_per_pair"] = [
            _div(o, t) for o, t in zip(o64, configs[fastest], strict=False)]
    return figures


def _mean(points: list[dict], key: str) -> float | None:
    values = [p[key] for p in points if p.get(key) is not None]
    return sum(values) / len(values) if values else None


def _latency_ratio(ours: dict | None, theirs: dict | None, key: str) -> float | None:
    a, b = (ours or {}).get(key), (theirs or {}).get(key)
    return a / b if a is not None and b else None


def variant_ratios(table: dict, prefix: str) -> dict:
    """Issue 5's targets for one model's variant table: int8 vs SavedModel speed, int8 vs float32 size."""
    int8, savedmodel = table.get("int8", {}), table.get("savedmodel", {})
    int8_served = int8.get("served_64") or {}
    # Side by side: the SavedModel point measured next to int8's, when the run has one.
    savedmodel_served = int8_served.get("savedmodel_adjacent") or savedmodel.get("served_64") or {}
    served = [int8_served.get("throughput_rps"), savedmodel_served.get("throughput_rps")]
    sizes = [table.get(v, {}).get("size_bytes") for v in ("int8", "float32")]
    return {
        f"{prefix}int8_over_savedmodel_inproc_b32": _target(
            _div(int8.get("inproc_b32_rows_s"), savedmodel.get("inproc_b32_rows_s")), 3.0
        ),
        f"{prefix}int8_over_savedmodel_inproc_b32_best_threads": _target(
            _div(int8.get("inproc_b32_best_rows_s"), savedmodel.get("inproc_b32_best_rows_s")), 3.0
        ),
        f"{prefix}int8_over_savedmodel_served_64": _target(_div(*served), 1.0),
        f"{prefix}int8_size_over_float32": _target(_div(*sizes), 0.30, at_most=True),
    }


def _div(a, b) -> float | None:
    a = a["throughput_rps"] if isinstance(a, dict) else a
    b = b["throughput_rps"] if isinstance(b, dict) else b
    return a / b if a is not None and b else None


def _target(value: float | None, target: float | None, at_most: bool = False) -> dict:
    met = None if value is None or target is None else (value <= target if at_most else value >= target)
    return {"value": value, "target": target, "comparison": "<=" if at_most else ">=", "met": met}


# -- rendering -----------------------------------------------------------------------------

def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _n(value, digits: int = 0) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def render(result: dict) -> str:
    """Markdown tables of every figure (also what README's Performance section quotes)."""
    m = result["machine"]
    parts = [f"Machine: {m['nproc']} cores, {m['cpu_model']}; {result['date']}; load average at start "
             f"{result['load_average_start'][0]:.2f}, at end {result['load_average_end'][0]:.2f}"]
    parts.append(render_ceiling(result["compute_ceiling"]))
    parts.append(render_sweep(result["sweep"]))
    parts.append(render_variants(result["variants"]))
    if "digits" in result:
        parts.append(render_variants(result["digits"]))
    parts.append(render_overload(result["overload"]))
    if "peer" in result:
        parts.append(render_peer(result["peer"]))
    if "protocols" in result:
        from loadtests.bench_protocols import render as render_protocols

        parts.append(render_protocols(result["protocols"]))
    parts.append(render_ratios(result["ratios"], result.get("metrics", {})))
    return "\n\n".join(parts)


def _ceiling_label(name: str, ceiling: dict) -> str:
    tf_threads = ceiling.get("tf_threads", {})
    if name == "savedmodel":
        return f"savedmodel (TF intra-op {tf_threads.get('intra_op')}, inter-op {tf_threads.get('inter_op')})"
    if name == "savedmodel@tf-default-threads":
        return "savedmodel (TF default threads)"
    variant, _, threads = name.partition("@")
    return f"{variant} ({threads.rstrip('t') or ceiling.get('tflite_threads', [1])[0]} thread(s))"


def render_ceiling(ceiling: dict) -> str:
    rows = []
    for name, rates in ceiling.items():
        if isinstance(rates, list) and rates and isinstance(rates[0], dict):
            label = _ceiling_label(name, ceiling)
            rows += [[label, str(r["batch"]), _n(r["rows_per_s"]), _n(r["ms_per_batch"], 2)] for r in rates]
    return "Compute ceiling (in-process, best of repeats)\n" + _table(["model", "batch", "rows/s", "ms/batch"], rows)


def render_sweep(sweep: dict) -> str:
    names = list(sweep)
    header = ["clients"] + [f"{n} {col}" for n in names for col in ("req/s", "p50 ms", "p99 ms")]
    rows = []
    for i, point in enumerate(sweep[names[0]]):
        row = [str(point["concurrency"])]
        for name in names:
            p = sweep[name][i]
            row += [_n(p["throughput_rps"]) + ("*" if p["errors"] else ""), _n(p["p50_ms"], 1), _n(p["p99_ms"], 1)]
        rows.append(row)
    cpu_rows = [[str(p["concurrency"])] + [_n(cpu_us_per_request(sweep[name][i])) for name in names]
                for i, p in enumerate(sweep[names[0]])]
    return ("Closed loop, one-row requests (* = errors at that point)\n" + _table(header, rows)
            + "\n\nServer CPU per request (us, all threads of the server process)\n"
            + _table(["clients", *names], cpu_rows))


def cpu_us_per_request(point: dict) -> float | None:
    """Server CPU time per completed request, from the server's CPU use over the point."""
    cores, rps = point.get("server_cpu_cores"), point.get("throughput_rps")
    return cores / rps * 1e6 if cores is not None and rps else None


def render_variants(table: dict) -> str:
    rows = []
    for variant, row in table["rows"].items():
        served = row["served_64"] or {}
        quality = row["accuracy"] if row["accuracy"] is not None else row.get("mse")
        rows.append([variant, _n(row["size_bytes"] and row["size_bytes"] / 1024, 1), _n(quality, 3),
                     _n(row["inproc_b1_rows_s"]), _n(row["inproc_b32_rows_s"]), _n(row.get("inproc_b32_best_rows_s")),
                     _n(served.get("throughput_rps")), _n(served.get("p99_ms"), 1)])
    header = ["variant", "size KiB", "accuracy", "in-process b1 rows/s", "in-process b32 rows/s",
              "b32 best threads rows/s", "served @64 req/s", "served @64 p99 ms"]
    return f"Variants of {table['model']} v{table['version']}\n" + _table(header, rows)


def render_overload(overload: dict) -> str:
    shed = ("UNAVAILABLE", "CANCELLED")
    rows = [[f"{p['factor']:.1f}x", _n(p["offered_rps"]), _n(p["sent_rps"]), _n(p["throughput_rps"]),
             _n(p["rejected_rps"]), _n(p.get("cancelled_rps")), _n(p["p50_ms"], 1), _n(p["p99_ms"], 1),
             _n(p.get("client_cpu_cores"), 2),
             str({k: v for k, v in p["errors"].items() if k not in shed} or "")] for p in overload["phases"]]
    header = ["phase", "offered/s", "sent/s", "admitted/s", "rejected/s (UNAVAILABLE)",
              "shed by gRPC core/s (CANCELLED)", "p50 ms", "p99 admitted ms", "generator CPU cores", "other errors"]
    return (f"Open loop around saturation ({overload['saturation_rps']:.0f} req/s, "
            f"{overload['seconds_per_phase']} s per phase, in this order)\n" + _table(header, rows))


def render_peer(peer: dict) -> str:
    """One table per MLServer configuration: each point against our batched server's point of the same round."""
    return "\n\n".join(_render_peer_config(peer, name, workers) for name, workers in peer_configs(peer).items())


def _render_peer_config(peer: dict, name: str, workers: int) -> str:
    rounds = peer.get("rounds_64", {})
    ours = peer["points"]["batchwise"] + rounds.get("batchwise", [])
    theirs = peer["points"][name] + rounds.get(name, [])
    rows = []
    for o, t in zip(ours, theirs, strict=True):
        errors = {**o["errors"], **{f"mlserver {k}": v for k, v in t["errors"].items()}}
        rows.append([str(o["concurrency"]), _n(o["throughput_rps"]), _n(o["p50_ms"], 1), _n(o["p99_ms"], 1),
                     _n(t["throughput_rps"]), _n(t["p50_ms"], 1), _n(t["p99_ms"], 1),
                     _n(_div(o, t), 2), _n(_latency_ratio(o, t, "p50_ms"), 2), _n(_latency_ratio(o, t, "p99_ms"), 2),
                     str(errors or "")])
    header = ["clients", "batchwise req/s", "p50 ms", "p99 ms", "mlserver req/s", "p50 ms", "p99 ms",
              "throughput ratio", "p50 ratio", "p99 ratio", "errors"]
    return (f"Peer: MLServer {peer.get('version')} (parallel_workers {workers}) vs Batchwise, "
            f"both max batch {peer['max_batch_size']}, max batch time {peer['max_batch_time_ms']} ms, "
            "points interleaved (rows after the sweep: extra rounds at 64 in alternating order)\n"
            + _table(header, rows))


def render_ratios(ratios: dict, metrics: dict) -> str:
    rows = []
    for key, value in ratios.items():
        if isinstance(value, dict):
            met = {True: "met", False: "MISSED", None: "n/a"}[value["met"]]
            rows.append([key, _n(value["value"], 2), f"{value['comparison']} {_n(value['target'], 2)}", met])
        elif isinstance(value, list):
            rows.append([key, ", ".join(_n(v, 2) for v in value), "", ""])
        else:
            rows.append([key, _n(value, 2), "", ""])
    return "Ratios and targets\n" + _table(["figure", "value", "target", ""], rows)
