"""The batching-policy section of `make bench` (issue 19): the default policy against batching off and fixed waits.

Servers (MNIST CNN SavedModel, one-row requests), all up at once and measured in one run:
  off        batching disabled
  adaptive   the default (mode=adaptive)
  fixed-T    mode=fixed, batch_timeout_ms T in FIXED_TIMEOUTS_MS, today's batch_idle_timeout_ms
  slo-S      mode=slo, latency_slo_ms S in SLOS_MS
Closed loop: 1 client (off vs adaptive, ABBA), 8 and 64 clients (adaptive vs every fixed-T, in
A B.. ..B A order; off too at 64), each sequence twice (once with --quick); ratios of medians.
Open loop on each slo-S server: SLO_FACTOR x the adaptive server's 64-client throughput (the
saturation rate), then a step STEP_FACTORS, --duration-s each (at least 2 s). The open loop is
h2load (`--rps` per connection, OPEN_CONNECTIONS x OPEN_STREAMS at most in flight): a Python
open-loop generator needs about a core at these rates, and on 2 cores that core is the server's
(measured: at 1,848 req/s with SLO 10 ms, 82 % refused and p99 37 ms with the Python generator,
6 % refused and p99 8-16 ms with h2load). h2load cannot see grpc-status, so the codes come from the
server's batchwise_predict_requests_total, scraped with the histogram.
"Time in server" is the server's own histogram batchwise_request_latency_seconds (Predict arrival
to response, so it includes decoding and encoding as well as queue and compute), scraped before
and after each open-loop phase (after its first second in the step), with fine buckets (BUCKETS_S)
so that p99 is known to within one bucket: the figure is the bucket's upper bound. The same scrapes
read the p99 of the queue wait and of the batch compute time, to show where a missed SLO's time went.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client.parser import text_string_to_metric_families

from loadtests import payloads, report, servers
from loadtests.bench_workers import grpc_frame, parse_h2load

if TYPE_CHECKING:
    from loadtests.bench import Bench

FIXED_TIMEOUTS_MS = (0, 1, 2, 5)
SLOS_MS = (10, 50)
SLO_FACTOR = 0.8
STEP_FACTORS = (0.2, 0.9, 0.2)
OPEN_CONNECTIONS, OPEN_STREAMS = 8, 64
LATENCY = "batchwise_request_latency_seconds"
# Histograms read around each open-loop phase: the time in server (the target), and where it went.
PHASE_HISTOGRAMS = {
    "server": LATENCY,
    "queue_wait": "batchwise_queue_wait_seconds",
    "compute": "batchwise_compute_seconds",
}
# 0.25 ms steps to 20 ms, 1 ms steps to 60 ms, then coarse: p99 read to within one step around each SLO.
BUCKETS_S = sorted(
    {round(i * 0.00025, 5) for i in range(1, 81)} | {i / 1000 for i in range(21, 61)} | {0.1, 0.25, 1.0, 5.0, 30.0}
)
TARGETS = {"p50_1": 1.15, "fixed_8": 0.95, "fixed_64": 0.95, "off_64": 3.0}


def measure(bench: Bench, version_dir: Path, request: Path, probe: bytes) -> dict:
    """The whole section with its own servers (started together, stopped at the end)."""
    section = PolicySection(bench, version_dir.parent.name)
    with servers.ServerSet() as group:
        bench.log("policy section: starting batching off, adaptive, fixed and slo servers")
        section.start(group, version_dir.parents[1])
        group.wait(probe, payloads.PREDICT_METHOD, model=version_dir.parent.name)
        result = section.run(group, request)
    print(render(result), file=sys.stderr, flush=True)
    return result


class PolicySection:
    """Starts the section's servers inside a ServerSet, then measures them (see the module docstring)."""

    def __init__(self, bench: Bench, model: str) -> None:
        self.bench = bench
        self.model = model
        self.metrics_url: dict[str, str] = {}

    def start(self, group: servers.ServerSet, repository: Path) -> None:
        env = {"BATCHWISE_METRICS__LATENCY_BUCKETS_S": json.dumps(BUCKETS_S)}
        configs: dict[str, dict[str, str]] = {"off": {"BATCHWISE_BATCHING__ENABLED": "false"}, "adaptive": {}}
        for timeout_ms in FIXED_TIMEOUTS_MS:
            configs[f"fixed-{timeout_ms}"] = {
                "BATCHWISE_BATCHING__MODE": "fixed",
                "BATCHWISE_BATCHING__BATCH_TIMEOUT_MS": str(timeout_ms),
            }
        for slo_ms in SLOS_MS:
            configs[f"slo-{slo_ms}"] = {
                "BATCHWISE_BATCHING__MODE": "slo",
                "BATCHWISE_BATCHING__LATENCY_SLO_MS": str(slo_ms),
            }
        for name, extra_env in configs.items():
            server = group.add(
                self.bench.ours(f"policy-{name}", repository, ["--runtime.variant", "savedmodel"], {**env, **extra_env})
            )
            args = self.bench.result["server_commands"][server.name]["args"]
            self.metrics_url[name] = f"http://127.0.0.1:{args[args.index('--metrics.port') + 1]}/metrics"

    def run(self, group: servers.ServerSet, request: Path) -> dict:
        ready = {name: group.ready[f"policy-{name}"] for name in self.metrics_url if f"policy-{name}" in group.ready}
        missing = set(self.metrics_url) - set(ready)
        if missing:
            raise RuntimeError(f"policy servers failed: {[group.failed.get(f'policy-{n}') for n in missing]}")
        result: dict = {"load_average_start": list(os.getloadavg())}
        result["closed"] = self.closed(ready, request)
        saturation = _median(result["closed"]["adaptive"], 64, "throughput_rps")
        result["saturation_rps"] = saturation
        result["slo"] = {
            str(slo): self.slo_points(ready[f"slo-{slo}"], f"slo-{slo}", request, saturation, slo) for slo in SLOS_MS
        }
        result["load_average_end"] = list(os.getloadavg())
        result["ratios"] = ratios(result)
        return result

    def closed(self, ready: dict, request: Path) -> dict[str, list[dict]]:
        """Closed-loop points in mirrored order, so that drift over the run falls on both sides alike."""
        fixed = [f"fixed-{t}" for t in FIXED_TIMEOUTS_MS]
        rounds = 1 if self.bench.args.quick else 2
        order = [
            (1, ["off", "adaptive", "adaptive", "off"] * rounds),
            (8, ["adaptive", *fixed, *fixed[::-1], "adaptive"] * rounds),
            (64, ["adaptive", "off", *fixed, *fixed[::-1], "off", "adaptive"] * rounds),
        ]
        points: dict[str, list[dict]] = {name: [] for name in ["off", "adaptive", *fixed]}
        for n, names in order:
            for name in names:
                points[name].append(self.bench.point(ready[name], request, n))
                self.bench.log(f"policy {name:9s} N={n:<3d} {report.describe_point(points[name][-1])}")
        return points

    def slo_points(
        self, server: servers.RunningServer, name: str, request: Path, saturation: float, slo_ms: int
    ) -> dict:
        """Warm the cost model (a short closed point), then the steady open loop and the step."""
        self.bench.point(server, request, 8)
        a = self.bench.args
        step_s = max(2.0, a.duration_s)
        phases = [{"rate": SLO_FACTOR * saturation, "seconds": a.duration_s, "skip_s": 0.0}]
        phases += [{"rate": f * saturation, "seconds": step_s, "skip_s": 1.0} for f in STEP_FACTORS]
        body = self.bench.work / "policy-grpc-frame.bin"
        body.write_bytes(grpc_frame(request.read_bytes()))
        measured = [self.open_phase(server, name, body, phase) for phase in phases]
        for phase in measured:
            self.bench.log(
                f"policy {name} open {phase['rate']:.0f}/s: server p99 <= {phase['server_p99_ms']} ms "
                f"(SLO {slo_ms}; queue wait p99 <= {phase['queue_wait_p99_ms']} ms, batch compute p99 <= "
                f"{phase['compute_p99_ms']} ms), refused {phase['refused_fraction']:.1%}; "
                f"h2load sent {phase['point']['sent_rps']:.0f}/s, server OK {phase['point']['ok']}"
            )
        return {"slo_ms": slo_ms, "steady": measured[0], "step": measured[1:]}

    def open_phase(self, server: servers.RunningServer, name: str, body: Path, phase: dict) -> dict:
        """One open-loop phase: h2load at `phase["rate"]` for its seconds; the server's p99 and codes
        between a scrape `skip_s` into the phase and one at its end."""
        url, rate = self.metrics_url[name], phase["rate"]
        duration = f"{round(phase['seconds'] * 1000)}ms"
        command = ["h2load", "-c", str(OPEN_CONNECTIONS), "-m", str(OPEN_STREAMS), "--rps",
                   str(max(1, round(rate / OPEN_CONNECTIONS))), "-D", duration, "-d", str(body),
                   "-H", "content-type: application/grpc", "-H", "te: trailers",
                   f"http://{server.target}{payloads.PREDICT_METHOD}"]  # fmt: skip
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as h2load:
            time.sleep(phase["skip_s"])
            before = scrape(url, self.model)
            output, errors = h2load.communicate(timeout=phase["seconds"] + 60)
        if h2load.returncode != 0:
            raise RuntimeError(f"h2load failed ({h2load.returncode}): {errors[-1000:]}")
        after = scrape(url, self.model)
        p99s = {key: p99_ms(before[key], after[key]) for key in PHASE_HISTOGRAMS}
        server_p99, observed = p99s["server"]
        codes = {code: after["codes"][code] - before["codes"].get(code, 0.0) for code in after["codes"]}
        done = parse_h2load(output)
        point = {"mode": "open", "generator": f"h2load {OPEN_CONNECTIONS}x{OPEN_STREAMS} --rps",
                 "offered_rps": rate, "sent_rps": done["done"] / phase["seconds"], "h2load": done,
                 "ok": int(codes.get("OK", 0)), "codes": codes}  # fmt: skip
        return {"rate": rate, "seconds": phase["seconds"], "skip_s": phase["skip_s"], "server_p99_ms": server_p99,
                "server_observed": observed, "point": point, "queue_wait_p99_ms": p99s["queue_wait"][0],
                "compute_p99_ms": p99s["compute"][0],
                "refused_fraction": codes.get("UNAVAILABLE", 0.0) / max(1.0, sum(codes.values()))}  # fmt: skip


def scrape(url: str, model: str) -> dict[str, dict]:
    """One scrape of `model`'s counters: "codes" (batchwise_predict_requests_total by code; h2load cannot
    see grpc-status) and, for each of PHASE_HISTOGRAMS, cumulative bucket counts by upper bound
    (summed over the model's label sets)."""
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    names = {family: key for key, family in PHASE_HISTOGRAMS.items()}
    found: dict[str, dict] = {"codes": {}, **{key: {} for key in PHASE_HISTOGRAMS}}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("model") != model:
                continue
            if sample.name == "batchwise_predict_requests_total":
                found["codes"][sample.labels["code"]] = found["codes"].get(sample.labels["code"], 0.0) + sample.value
            elif family.name in names and sample.name.endswith("_bucket"):
                buckets, le = found[names[family.name]], float(sample.labels["le"])
                buckets[le] = buckets.get(le, 0.0) + sample.value
    return found


def p99_ms(before: dict[float, float], after: dict[float, float]) -> tuple[float | None, int]:
    """(upper bound of the bucket holding the 99th percentile, in ms; observations) between two scrapes."""
    delta = sorted((le, after[le] - before.get(le, 0.0)) for le in after)
    total = delta[-1][1] if delta else 0
    if total <= 0:
        return None, 0
    for le, count in delta:
        if count >= 0.99 * total:
            return round(le * 1000, 3), int(total)
    return None, int(total)


def _median(points: list[dict], n: int, key: str) -> float:
    """The median of `key` over the points at concurrency `n` (robust to a neighbour's burst hitting one point)."""
    values = [p[key] for p in points if p["concurrency"] == n and p[key] is not None]
    return statistics.median(values) if values else float("nan")


def ratios(result: dict) -> list[dict]:
    """Each acceptance figure of issue 19 with its target and whether it holds."""
    closed = result["closed"]
    fixed = [f"fixed-{t}" for t in FIXED_TIMEOUTS_MS]
    rows = [
        {
            "name": "1 client: p50 adaptive / p50 batching off",
            "value": _median(closed["adaptive"], 1, "p50_ms") / _median(closed["off"], 1, "p50_ms"),
            "target": "<= 1.15",
            "holds_if": ("le", TARGETS["p50_1"]),
        }
    ]
    for n in (8, 64):
        best = max(fixed, key=lambda name: _median(closed[name], n, "throughput_rps"))
        ours = _median(closed["adaptive"], n, "throughput_rps")
        rows.append(
            {
                "name": f"{n} clients: throughput adaptive / best fixed ({best})",
                "value": ours / _median(closed[best], n, "throughput_rps"),
                "target": ">= 0.95",
                "holds_if": ("ge", TARGETS[f"fixed_{n}"]),
            }
        )
    rows.append(
        {
            "name": "64 clients: throughput adaptive / batching off",
            "value": _median(closed["adaptive"], 64, "throughput_rps") / _median(closed["off"], 64, "throughput_rps"),
            "target": ">= 3",
            "holds_if": ("ge", TARGETS["off_64"]),
        }
    )
    for slo, entry in result["slo"].items():
        phases = [("steady 0.8x", entry["steady"])]
        phases += [(f"step {f}x", p) for f, p in zip(STEP_FACTORS, entry["step"], strict=True)]
        for label, phase in phases:
            rows.append(
                {
                    "name": f"SLO {slo} ms, {label}: server p99 (ms) / refused {phase['refused_fraction']:.1%}"
                    + _where(phase),
                    "value": phase["server_p99_ms"],
                    "target": f"<= {slo}",
                    "holds_if": ("le", float(slo)),
                }
            )
    for row in rows:
        op, bound = row.pop("holds_if")
        value = row["value"]
        row["holds"] = value is not None and (value <= bound if op == "le" else value >= bound)
    return rows


def _where(phase: dict) -> str:
    """Where the time went, for a row's name: the queue wait's and the batch compute's p99 (nothing
    when no batch ran in the phase, e.g. everything was refused)."""
    if phase.get("compute_p99_ms") is None:
        return ""
    return f" (queue {phase['queue_wait_p99_ms']}, compute {phase['compute_p99_ms']})"


def render(result: dict) -> str:
    """The section as text: saturation, load averages and each ratio against its target."""
    lines = [
        f"\nBatching policy (issue 19): saturation (adaptive, 64 clients) {result['saturation_rps']:.0f} req/s; "
        f"load average {result['load_average_start'][0]:.2f} -> {result['load_average_end'][0]:.2f}"
    ]
    for row in result["ratios"]:
        value = "n/a" if row["value"] is None else f"{row['value']:.3g}"
        verdict = "holds" if row["holds"] else "DOES NOT HOLD"
        lines.append(f"  {row['name']:100s} {value:>7s}  target {row['target']:8s} {verdict}")
    return "\n".join(lines)
