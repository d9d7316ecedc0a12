"""Soak: hundreds of thousands of mixed valid and invalid requests against one server process.

    .venv/bin/python loadtests/soak.py --repository model_repository            # starts the CLI server
    .venv/bin/python loadtests/soak.py --target 127.0.0.1:8500 --server-pid PID # an already running one

The traffic is built once from each model's GetModelMetadata and pre-serialized: about 55 % valid
(Predict of 1-8 rows, metadata, status) and 45 % invalid (unknown or unsafe model names, wrong
dtypes and shapes, 2^40-element declared shapes, unparseable bytes, bad versions, unknown
inputs). A grpc.aio client keeps `--concurrency` calls in flight. Reports the server's RSS after
warm-up and at the end, its peak, and every outcome by kind; exits 1 if any valid request failed,
any invalid one got a status outside its expected set, or RSS grew by more than --max-growth-mib.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from service.api import (  # noqa: E402
    get_model_metadata_pb2,
    get_model_status_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
    tensor_pb2,
    types_pb2,
)
from service.rpc.codec import numpy_dtype, to_tensor_proto  # noqa: E402

PREDICT = "/tensorflow.serving.PredictionService/Predict"
METADATA = "/tensorflow.serving.PredictionService/GetModelMetadata"
STATUS = "/tensorflow.serving.ModelService/GetModelStatus"
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
MIB = 1024 * 1024


@dataclass(frozen=True)
class Case:
    """One pre-serialized call: what it tests, and the status names it may end with."""

    kind: str
    method: str
    payload: bytes
    expected: frozenset[str]

    @property
    def valid(self) -> bool:
        return self.expected == frozenset({"OK"})


def spec_request(cls, model: str, **fields):
    request = cls(**fields)
    request.model_spec.name = model
    return request


def signature_inputs(channel: grpc.Channel, model: str) -> dict[str, tuple[np.dtype, list[int]]]:
    """serving_default's inputs of `model`: name -> (numpy dtype, shape with -1 for unknown dims)."""
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = spec_request(get_model_metadata_pb2.GetModelMetadataRequest, model, metadata_field=["signature_def"])
    signatures = get_model_metadata_pb2.SignatureDefMap()
    stub.GetModelMetadata(request, timeout=30).metadata["signature_def"].Unpack(signatures)
    inputs = signatures.signature_def["serving_default"].inputs
    return {name: (numpy_dtype(info.dtype), [d.size for d in info.tensor_shape.dim]) for name, info in inputs.items()}


def sample(dtype: np.dtype, shape: list[int], rows: int, rng: np.random.Generator) -> np.ndarray:
    concrete = [rows if i == 0 and d < 0 else max(d, 1) for i, d in enumerate(shape)]
    if dtype == np.dtype(object):
        return np.full(concrete, b"soak", dtype=object)
    if dtype.kind == "f":
        return rng.normal(size=concrete).astype(dtype)
    return np.zeros(concrete, dtype)


def predict_bytes(model: str, inputs: dict[str, np.ndarray | tensor_pb2.TensorProto], **spec) -> bytes:
    request = spec_request(predict_pb2.PredictRequest, model)
    for key, value in spec.items():
        if key == "version":
            request.model_spec.version.value = value
        else:
            setattr(request.model_spec, key, value)
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(value if isinstance(value, tensor_pb2.TensorProto) else to_tensor_proto(value))
    return request.SerializeToString()


def model_cases(model: str, signature: dict[str, tuple[np.dtype, list[int]]], seed: int) -> list[Case]:
    """Valid and invalid calls for one model."""
    rng = np.random.default_rng(seed)
    ok, invalid = frozenset({"OK"}), frozenset({"INVALID_ARGUMENT"})
    cases = []
    for rows in (1, 1, 2, 4, 8):
        arrays = {name: sample(dtype, shape, rows, rng) for name, (dtype, shape) in signature.items()}
        cases += [Case("predict", PREDICT, predict_bytes(model, arrays), ok)] * 2
    metadata = spec_request(get_model_metadata_pb2.GetModelMetadataRequest, model, metadata_field=["signature_def"])
    cases.append(Case("metadata", METADATA, metadata.SerializeToString(), ok))
    cases.append(Case("status", STATUS, spec_request(get_model_status_pb2.GetModelStatusRequest, model)
                      .SerializeToString(), ok))
    name, (dtype, _) = next(iter(signature.items()))
    good = {n: sample(d, s, 1, rng) for n, (d, s) in signature.items()}
    wrong_dtype = np.zeros(good[name].shape, np.float64 if dtype != np.float64 else np.float32)
    huge = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[1.0])
    huge.tensor_shape.dim.add(size=2**40)
    bad_metadata = spec_request(get_model_metadata_pb2.GetModelMetadataRequest, model, metadata_field=["nope"])
    cases += [
        Case("wrong_dtype", PREDICT, predict_bytes(model, {**good, name: wrong_dtype}), invalid),
        Case("wrong_rank", PREDICT, predict_bytes(model, {**good, name: good[name][np.newaxis]}), invalid),
        Case("huge_declared_shape", PREDICT, predict_bytes(model, {**good, name: huge}),
             frozenset({"RESOURCE_EXHAUSTED"})),
        Case("unknown_input", PREDICT, predict_bytes(model, {**good, "soak_unknown": good[name]}), invalid),
        Case("missing_input", PREDICT, predict_bytes(model, {}), invalid),
        Case("version_zero", PREDICT, predict_bytes(model, good, version=0), invalid),
        Case("unknown_version", PREDICT, predict_bytes(model, good, version=2**63 - 1), frozenset({"NOT_FOUND"})),
        Case("bad_metadata_field", METADATA, bad_metadata.SerializeToString(), invalid),
    ]
    return cases


def global_cases(model: str) -> list[Case]:
    """Invalid calls that do not depend on a model's signature."""
    valid = predict_bytes(model, {})
    return [
        Case("unknown_model", PREDICT, predict_bytes("soak-no-such-model", {}), frozenset({"NOT_FOUND"})),
        Case("traversal_name", PREDICT, predict_bytes("../" + model, {}), frozenset({"INVALID_ARGUMENT"})),
        Case("nul_name", STATUS, spec_request(get_model_status_pb2.GetModelStatusRequest, "a\x00b")
             .SerializeToString(), frozenset({"INVALID_ARGUMENT"})),
        Case("unparseable", PREDICT, valid + b"\x0f\xff\xff", frozenset({"INVALID_ARGUMENT"})),
        Case("unknown_status_model", STATUS, spec_request(get_model_status_pb2.GetModelStatusRequest, "nope")
             .SerializeToString(), frozenset({"NOT_FOUND"})),
    ]


def build_traffic(target: str, models: list[str], seed: int = 0) -> list[Case]:
    """The repeating traffic pattern: each model's cases plus global invalid ones, interleaved."""
    with grpc.insecure_channel(target) as channel:
        cases = [c for i, m in enumerate(models) for c in model_cases(m, signature_inputs(channel, m), seed + i)]
    cases += global_cases(models[0])
    order = np.random.default_rng(seed).permutation(len(cases))
    return [cases[i] for i in order]


async def run(target: str, cases: list[Case], total: int, concurrency: int) -> Counter[tuple[str, str, bool]]:
    """Send `total` calls cycling through `cases`, `concurrency` at a time; count (kind, status, as expected)."""
    outcomes: Counter[tuple[str, str, bool]] = Counter()
    counter = iter(range(total))
    async with grpc.aio.insecure_channel(target) as channel:
        stubs = {m: channel.unary_unary(m) for m in (PREDICT, METADATA, STATUS)}

        async def worker() -> None:
            for n in counter:
                case = cases[n % len(cases)]
                try:
                    await stubs[case.method](case.payload, timeout=60)
                    code = "OK"
                except grpc.aio.AioRpcError as exc:
                    code = exc.code().name
                outcomes[(case.kind, code, code in case.expected)] += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return outcomes


# ---- the server process ------------------------------------------------------------------------


def rss_bytes(pid: int, field: str = "VmRSS") -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith(field + ":"))


def reset_peak(pid: int) -> None:
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        print("note: cannot reset the peak RSS (VmHWM); the peak below counts from the server's start")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(repository: Path, log_path: Path) -> tuple[subprocess.Popen, str]:
    """`python -m service` on free ports, logging to log_path; returns (process, target) once SERVING."""
    port = free_port()
    env = {**os.environ, "BATCHWISE_METRICS__PORT": str(free_port()), "BATCHWISE_REPOSITORY__POLL_INTERVAL_S": "0",
           "BATCHWISE_HTTP__PORT": "0"}  # fmt: skip
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "service", "--repository.path", str(repository),
                                 "--server.port", str(port)], cwd=ROOT, env=env, stdout=log, stderr=log)
    target = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}; see {log_path}")
        try:
            with grpc.insecure_channel(target) as channel:
                reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
            if reply.status == health_pb2.HealthCheckResponse.SERVING:
                return proc, target
        except grpc.RpcError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise SystemExit(f"server not SERVING after 300 s; see {log_path}")


def models_in(repository: Path) -> list[str]:
    return sorted(p.name for p in repository.iterdir() if p.is_dir() and MODEL_NAME.fullmatch(p.name))


# ---- report ------------------------------------------------------------------------------------


def report(outcomes: Counter, elapsed_s: float, rss: dict[str, int]) -> dict:
    by_kind: dict[str, Counter] = {}
    for (kind, code, _), count in outcomes.items():
        by_kind.setdefault(kind, Counter())[code] += count
    total = sum(outcomes.values())
    valid_kinds = {"predict", "metadata", "status"}
    result = {
        "requests": total,
        "valid": sum(c for (k, _, _), c in outcomes.items() if k in valid_kinds),
        "failed_valid": sum(c for (k, _, ok), c in outcomes.items() if k in valid_kinds and not ok),
        "unexpected_invalid": sum(c for (k, _, ok), c in outcomes.items() if k not in valid_kinds and not ok),
        "seconds": round(elapsed_s, 1),
        "requests_per_s": round(total / elapsed_s),
        "rss_mib": {key: round(value / MIB, 1) for key, value in rss.items()},
        "outcomes": {kind: dict(codes) for kind, codes in sorted(by_kind.items())},
    }
    result["rss_growth_mib"] = round((rss["end"] - rss["start"]) / MIB, 1)
    return result


def server_under_test(args: argparse.Namespace) -> tuple[subprocess.Popen | None, str, int | None]:
    """(process we started or None, target, pid for RSS readings or None)."""
    if args.target:
        return None, args.target, args.server_pid
    log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"batchwise-soak-{os.getpid()}.log"
    proc, target = start_server(args.repository, log_path)
    print(f"server pid {proc.pid} on {target}, log {log_path}", flush=True)
    return proc, target, proc.pid


def machine() -> dict:
    """Where and with what the figures were measured."""
    from importlib.metadata import PackageNotFoundError, version

    with open("/proc/cpuinfo") as cpuinfo:
        cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "")
    versions = {}
    for package in ("grpcio", "protobuf", "numpy", "tensorflow", "ai-edge-litert"):
        with contextlib.suppress(PackageNotFoundError):
            versions[package] = version(package)
    return {"nproc": os.cpu_count(), "cpu": cpu, "python": sys.version.split()[0], "versions": versions,
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repository", type=Path, default=ROOT / "model_repository")
    parser.add_argument("--model", action="append", help="model to drive (repeatable; default: all in the repository)")
    parser.add_argument("--target", help="an already running server (then give --server-pid for RSS)")
    parser.add_argument("--server-pid", type=int)
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--warmup", type=int, default=20_000, help="requests before the start RSS is taken")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--max-growth-mib", type=float, default=50.0)
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args(argv)

    proc, target, pid = server_under_test(args)
    try:
        result = soak(args, target, pid)
    finally:
        if proc is not None:  # also when the soak itself failed: never leave the server running
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            exit_code = proc.wait(60)
    if proc is not None:
        result["server_exit_code"] = exit_code
    print(json.dumps(result, indent=2))
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=2) + "\n")
    failed = result["failed_valid"] or result["unexpected_invalid"] or result.get("server_exit_code", 0)
    return 1 if failed or (pid and result["rss_growth_mib"] > args.max_growth_mib) else 0


def soak(args: argparse.Namespace, target: str, pid: int | None) -> dict:
    """Warm up, take the start RSS, run the timed calls, and return the report."""
    models = args.model or models_in(args.repository)
    cases = build_traffic(target, models)
    print(f"{len(cases)} distinct calls over {models}; {sum(c.valid for c in cases)} valid", flush=True)
    asyncio.run(run(target, cases, args.warmup, args.concurrency))
    if pid:
        reset_peak(pid)
    rss = {"start": rss_bytes(pid)} if pid else {"start": 0}
    started = time.monotonic()
    outcomes = asyncio.run(run(target, cases, args.requests, args.concurrency))
    elapsed_s = time.monotonic() - started
    rss.update({"end": rss_bytes(pid), "peak": rss_bytes(pid, "VmHWM")} if pid else {"end": 0, "peak": 0})
    return {**report(outcomes, elapsed_s, rss), "concurrency": args.concurrency, "warmup": args.warmup,
            "models": models, "machine": machine()}

if __name__ == "__main__":
    sys.exit(main())
