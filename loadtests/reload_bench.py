"""Reload benchmark: model A's latency under steady load, with and without model B being reloaded.

    .venv/bin/python loadtests/reload_bench.py [--phase-s 7] [--concurrency 8] [--out FILE.json]

Starts the real server (`python -m service`) in a subprocess on a temporary repository with
model A (a tiny affine SavedModel) and model B (a Keras MLP, about 1M parameters). This process
drives A with a closed-loop grpc.aio client (the request is serialized once and sent as raw
bytes) through alternating phases: "steady" (nothing else happens) and "reloading" (a thread
publishes a new version of B, tmp folder + os.rename, as soon as the previous one is AVAILABLE,
so B is loaded, warmed, swapped and unloaded back to back). Prints A's latency per condition
side by side and writes them, with the machine and versions, as JSON. About a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import importlib.metadata
import json
import os
import platform
import re
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from loadtests.servers import start_server  # noqa: E402
from service.api import get_model_status_pb2, model_service_pb2_grpc, predict_pb2  # noqa: E402
from service.rpc.codec import to_tensor_proto  # noqa: E402

PREDICT = "/tensorflow.serving.PredictionService/Predict"
AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE


def build_repository(root: Path) -> Path:
    """A/1 (affine) and B/1 (MLP) under root; returns B's source folder to publish copies of."""
    import keras
    import tensorflow as tf

    class Affine(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
        def serve(self, x):
            return {"y": x * 2.0 + 1.0}

    affine = Affine()
    tf.saved_model.save(affine, str(root / "A" / "1"), signatures={"serving_default": affine.serve})
    layers = [keras.Input((64,))] + [keras.layers.Dense(512, activation="relu") for _ in range(4)]
    mlp = keras.Sequential([*layers, keras.layers.Dense(10, activation="softmax")])
    source = root.parent / "B-source"
    mlp.export(str(source), verbose=False)
    shutil.copytree(source, root / "B" / "1")
    return source


class Publisher(threading.Thread):
    """Publishes B versions back to back while `active` is set; counts the ones that became AVAILABLE."""

    def __init__(self, target: str, repo: Path, source: Path) -> None:
        super().__init__(daemon=True)
        self.active, self.done = threading.Event(), threading.Event()
        self.target, self.repo, self.source = target, repo, source
        self.version, self.published = 1, 0

    def run(self) -> None:
        with grpc.insecure_channel(self.target) as channel:
            stub = model_service_pb2_grpc.ModelServiceStub(channel)
            while not self.done.is_set():
                if not self.active.wait(0.1) or not self._available(stub, self.version):
                    continue
                self.version += 1
                tmp = self.repo / "B" / f".tmp-{self.version}-bench"
                shutil.copytree(self.source, tmp, copy_function=shutil.copy)
                os.rename(tmp, self.repo / "B" / str(self.version))
                self.published += 1

    @staticmethod
    def _available(stub, version: int) -> bool:
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = "B"
        states = {s.version: s.state for s in stub.GetModelStatus(request, timeout=10).model_version_status}
        time.sleep(0.05)
        return states.get(version) == AVAILABLE


async def drive(target: str, concurrency: int, duration_s: float) -> tuple[list[float], dict[str, int]]:
    """Closed loop: `concurrency` callers, each sending its next request when the last returns."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "A"
    request.inputs["x"].CopyFrom(to_tensor_proto(np.ones((1, 3), np.float32)))
    payload = request.SerializeToString()
    latencies_s: list[float] = []
    errors: dict[str, int] = {}
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_unary(PREDICT)
        end = time.monotonic() + duration_s

        async def caller():
            while time.monotonic() < end:
                start = time.perf_counter()
                try:
                    await call(payload, timeout=30)
                    latencies_s.append(time.perf_counter() - start)
                except grpc.aio.AioRpcError as exc:
                    errors[exc.code().name] = errors.get(exc.code().name, 0) + 1

        await asyncio.gather(*(caller() for _ in range(concurrency)))
    return latencies_s, errors


def run_phases(target: str, publisher: Publisher, concurrency: int, phase_s: float) -> dict[str, list]:
    """Warm up, then alternate steady and reloading phases; condition -> [latencies_s, errors]."""
    phases: dict[str, list] = {"steady": [[], {}], "reloading": [[], {}]}
    asyncio.run(drive(target, concurrency, 3.0))  # warm-up, discarded
    for name in ("steady", "reloading", "steady", "reloading"):
        (publisher.active.set if name == "reloading" else publisher.active.clear)()
        time.sleep(0.5 if name == "steady" else 0)  # let a reload in flight finish before a steady phase
        latencies, errors = asyncio.run(drive(target, concurrency, phase_s))
        phases[name][0] += latencies
        for code, count in errors.items():
            phases[name][1][code] = phases[name][1].get(code, 0) + count
    return phases


def summarize(latencies_s: list[float], errors: dict[str, int], duration_s: float) -> dict:
    ms = np.asarray(latencies_s) * 1000
    return {
        "requests": len(ms), "throughput_rps": round(len(ms) / duration_s, 1), "errors": errors,
        **{f"p{q}_ms": round(float(np.percentile(ms, q)), 3) for q in (50, 90, 99)},
        "max_ms": round(float(ms.max()), 3),
    }


def reload_times(log_text: str) -> list[dict]:
    pattern = r"model B version (\d+) AVAILABLE \(variant \w+, load ([\d.]+)s, warm-up ([\d.]+)s"
    return [{"version": int(v), "load_s": float(a), "warmup_s": float(w)} for v, a, w in re.findall(pattern, log_text)]


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    versions = {p: importlib.metadata.version(p) for p in ("grpcio", "tensorflow", "numpy", "protobuf")}
    return {"nproc": os.cpu_count(), "cpu": cpu, "python": platform.python_version(), **versions}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--phase-s", type=float, default=7.0, help="length of each measured phase")
    parser.add_argument("--concurrency", type=int, default=8, help="closed-loop callers on model A")
    parser.add_argument("--out", type=Path, default=ROOT / "loadtests" / "results" / "reload_bench.json")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="reload-bench-"))
    repo = work / "repo"
    source = build_repository(repo)
    log_path = work / "server.log"
    server = start_server(["--repository.path", str(repo), "--repository.poll-interval-s", "0.25"], log_path=log_path)
    target = server.target
    publisher = Publisher(target, repo, source)
    try:
        server.wait_serving()
        publisher.start()
        phases = run_phases(target, publisher, args.concurrency, args.phase_s)
    finally:
        publisher.done.set()
        server.stop()
    reloads = reload_times(log_path.read_text())[1:]  # B/1 loads at start-up
    report = {
        "benchmark": "reload_bench", "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]), "machine": machine(),
        "concurrency": args.concurrency, "phase_s": args.phase_s,
        "A": {name: summarize(lat, err, 2 * args.phase_s) for name, (lat, err) in phases.items()},
        "B_reloads": {"published": publisher.published, "available": len(reloads), "each": reloads},
    }
    steady, reloading = report["A"]["steady"], report["A"]["reloading"]
    report["ratio_reloading_over_steady"] = {k: round(reloading[k] / steady[k], 2) for k in ("p50_ms", "p99_ms")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)
    shutil.rmtree(work, ignore_errors=True)
    return 0


def print_table(report: dict) -> None:
    rows = [("requests", "requests"), ("req/s", "throughput_rps"), ("p50 ms", "p50_ms"), ("p90 ms", "p90_ms"),
            ("p99 ms", "p99_ms"), ("max ms", "max_ms"), ("errors", "errors")]
    steady, reloading = report["A"]["steady"], report["A"]["reloading"]
    print(f"\nModel A, closed loop x{report['concurrency']}, {2 * report['phase_s']:.0f}s per condition")
    print(f"{'':10}{'steady':>14}{'B reloading':>14}")
    for label, key in rows:
        print(f"{label:10}{steady[key]!s:>14}{reloading[key]!s:>14}")
    each = report["B_reloads"]["each"]
    mean_load = np.mean([r["load_s"] + r["warmup_s"] for r in each]) if each else float("nan")
    print(f"B versions made AVAILABLE while A was measured: {len(each)} (mean load+warm-up {mean_load:.2f}s)")
    ratio = report["ratio_reloading_over_steady"]
    print(f"A while B reloads, relative to steady: p50 x{ratio['p50_ms']}, p99 x{ratio['p99_ms']}")


if __name__ == "__main__":
    sys.exit(main())
