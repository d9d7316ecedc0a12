"""Worker-mode helpers: start `python -m service --server.workers N` on TF-free iris, load it, read its metrics."""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from loadtests.servers import free_port, health_status, start_server
from service.api import predict_pb2
from service.rpc.codec import to_tensor_proto
from tests.support import blocked_tf_env

SERVING = 1
NOT_SERVING = 2


@dataclass
class WorkerServer:
    """A running worker-mode server: the parent process, its gRPC target, metrics URL and log."""

    proc: subprocess.Popen
    port: int
    metrics_port: int
    log: Path

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def worker_pids(self) -> list[int]:
        """Pids of the live worker processes (the parent's spawned children, not the resource tracker)."""
        pids = []
        try:
            tasks = list(Path(f"/proc/{self.proc.pid}/task").iterdir())
            children = [int(c) for task in tasks for c in (task / "children").read_text().split()]
        except OSError:  # the supervisor has exited
            return []
        for child in children:
            try:
                zombie = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
                if not zombie and b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                    pids.append(child)
            except OSError:  # gone (or reaped) meanwhile
                continue
        return sorted(pids)

    def samples(self, name: str) -> list[tuple[dict[str, str], float]]:
        """Every sample called `name` on the aggregated /metrics, as (labels, value)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as reply:
            text = reply.read().decode()
        return [(s.labels, s.value) for f in text_string_to_metric_families(text) for s in f.samples if s.name == name]

    def total(self, name: str, **labels: str) -> float:
        return sum(v for got, v in self.samples(name) if all(got.get(k) == w for k, w in labels.items()))

    def log_text(self) -> str:
        return self.log.read_text()


def start_workers(repo: Path, log: Path, workers: int = 2, *extra: str) -> WorkerServer:
    """Start worker mode on free ports with `import tensorflow` blocked; wait until health is SERVING."""
    port, metrics_port = free_port(), free_port()
    args = [
        "--repository.path",
        str(repo),
        "--metrics.port",
        str(metrics_port),
        "--server.workers",
        str(workers),
        *extra,
    ]
    proc = start_server(args, port=port, env=blocked_tf_env(), log_path=log).proc
    server = WorkerServer(proc, port, metrics_port, log)
    wait_until(lambda: health_status(server.target) == SERVING, 120, server)
    wait_until(lambda: len(server.worker_pids()) == workers, 30, server)
    return server


def wait_until(condition, timeout_s: float, server: WorkerServer | None = None) -> None:
    """Poll `condition` until true; raise (with the server's log tail) on timeout or if the server exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server is not None and server.proc.poll() is not None:
            raise RuntimeError(f"server exited with {server.proc.returncode}:\n{server.log_text()[-3000:]}")
        if condition():
            return
        time.sleep(0.2)
    tail = server.log_text()[-3000:] if server is not None else ""
    raise TimeoutError(f"condition not met within {timeout_s} s\n{tail}")


def copy_iris(repo_root: Path, dest: Path) -> Path:
    """A repository holding only iris/1 (TFLite variants and card) copied from the built LiteRT models."""
    shutil.copytree(repo_root / "iris" / "1", dest / "iris" / "1")
    return dest


def publish_version(repo: Path, model: str, version: int) -> None:
    """Publish a new version the way a trainer does: build it aside, then rename it into place."""
    staging = repo.parent / f"staging-{model}-{version}"  # same filesystem, outside the repository
    shutil.copytree(repo / model / "1", staging)
    staging.rename(repo / model / str(version))


def iris_request() -> bytes:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "iris"
    request.inputs["features"].CopyFrom(to_tensor_proto(np.ones((1, 4), np.float32)))
    return request.SerializeToString()


@dataclass
class LoadResult:
    """What each load thread saw: status codes overall, and the versions in call order per connection."""

    codes: Counter = field(default_factory=Counter)
    versions: list[list[int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def sent(self) -> int:
        return sum(self.codes.values())


class Load:
    """`connections` threads, each on its own channel (own TCP connection), sending Predicts back to back.

    With `stop_on_error`, a thread stops after its first failed call, as a client that retries on
    another replica would (the existing drain tests' clients do the same). With `wait_for_ready`,
    a call waits for a connection instead of failing fast while the channel is reconnecting, as a
    client that rides over a worker crash would.
    """

    def __init__(
        self, target: str, connections: int = 8, stop_on_error: bool = False, wait_for_ready: bool = False
    ) -> None:
        self._stop_on_error = stop_on_error
        self._wait_for_ready = wait_for_ready
        self.result = LoadResult(versions=[[] for _ in range(connections)])
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(target, i), daemon=True) for i in range(connections)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> LoadResult:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)
        return self.result

    def _run(self, target: str, index: int) -> None:
        body = iris_request()
        options = [("grpc.use_local_subchannel_pool", 1)]  # a connection of its own, not a shared subchannel
        with grpc.insecure_channel(target, options=options) as channel:
            call = channel.unary_unary(
                "/tensorflow.serving.PredictionService/Predict",
                response_deserializer=predict_pb2.PredictResponse.FromString,
            )
            while not self._stop.is_set():
                try:
                    reply = call(body, timeout=30, wait_for_ready=self._wait_for_ready)
                    code, version = "OK", reply.model_spec.version.value
                except grpc.RpcError as err:
                    code, version = err.code().name, None
                with self.result.lock:
                    self.result.codes[code] += 1
                    if version is not None:
                        self.result.versions[index].append(version)
                if code != "OK" and self._stop_on_error:
                    return


def stopped_lines(log: str) -> list[dict[str, int]]:
    """The per-worker 'stopped; API calls since start: accepted=... completed=...' counters in the log."""
    found = re.findall(r"\[w\d+\] .*stopped; API calls since start: (.*)", log)
    return [{k: int(v) for k, v in (pair.split("=") for pair in line.split())} for line in found]
