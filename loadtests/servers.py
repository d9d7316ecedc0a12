"""Start and stop the servers the benchmark measures, each in its own process on a free loopback port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc

from service.api import get_model_status_pb2

ROOT = Path(__file__).resolve().parents[1]
READY_TIMEOUT_S = 240.0
STATUS_METHOD = "/tensorflow.serving.ModelService/GetModelStatus"
END_STATE = get_model_status_pb2.ModelVersionStatus.END


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RunningServer:
    """A server subprocess: where it listens, its pid, and where its stderr goes."""

    name: str
    target: str
    proc: subprocess.Popen
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu_s(self) -> float:
        """CPU time (user + system, all threads) the process has used so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM, then SIGKILL if it does not exit within `timeout_s`."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def wait_ready(
    server: RunningServer, probe: bytes, method: str, *, model: str | None = None, timeout_s: float = READY_TIMEOUT_S
) -> None:
    """Block until `method` answers `probe` with OK.

    With `model`, a version of it that failed to load (GetModelStatus: END with an error, e.g. the
    consistency guard refused the only variant allowed) fails at once instead of at the timeout.
    Raises RuntimeError (with the log tail) when the server does not become ready.
    """
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    with grpc.insecure_channel(server.target) as channel:
        call = channel.unary_unary(method)
        while time.monotonic() < deadline and server.proc.poll() is None:
            try:
                call(probe, timeout=5.0)
                return
            except grpc.RpcError as exc:
                last = f"{exc.code().name}: {exc.details()}"
            failure = model and _load_failure(channel, model)
            if failure:
                last = f"model {model} failed to load: {failure}"
                break
            time.sleep(0.3)
    tail = server.log_path.read_text(errors="replace")[-2000:] if server.log_path.exists() else ""
    server.stop()
    raise RuntimeError(f"{server.name} at {server.target} did not become ready ({last}); log tail:\n{tail}")


def _load_failure(channel: grpc.Channel, model: str) -> str | None:
    """The error of a version of `model` that ended with one, else None (also when the server cannot say)."""
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = model
    try:
        reply = channel.unary_unary(STATUS_METHOD)(request.SerializeToString(), timeout=5.0)
    except grpc.RpcError:
        return None
    for status in get_model_status_pb2.GetModelStatusResponse.FromString(reply).model_version_status:
        if status.state == END_STATE and status.status.error_message:
            return status.status.error_message
    return None


def start_ours(
    name: str, repository: Path, args: Sequence[str], *, env: dict[str, str], log_dir: Path,
    entry: Sequence[str] = ("-m", "service"),
) -> RunningServer:
    """`python -m service --repository.path REPO --server.port P ARGS` with BATCHWISE_* `env` on top of ours.

    `entry` replaces `-m service` (e.g. a script that wraps the server for profiling). The HTTP port is a
    free one (BATCHWISE_HTTP__PORT=0) unless `env` or `args` name one: servers started together must not
    all bind the default 8501.
    """
    port = free_port()
    command = [sys.executable, *entry, "--repository.path", str(repository), "--server.port", str(port),
               "--repository.poll-interval-s", "0", *args]
    return _spawn(name, command, {"BATCHWISE_HTTP__PORT": "0", **env}, port, log_dir)


def start_fixed(name: str, response_file: Path, log_dir: Path, event_loop: str = "auto") -> RunningServer:
    """The framework-ceiling server (loadtests/fixed_server.py) answering with `response_file`'s bytes,
    on the event loop our server uses (`event_loop`, as server.event_loop)."""
    port = free_port()
    command = [sys.executable, "-m", "loadtests.fixed_server", "--port", str(port),
               "--response-file", str(response_file), "--event-loop", event_loop]
    return _spawn(name, command, {}, port, log_dir)


def _spawn(name: str, command: list[str], env: dict[str, str], port: int, log_dir: Path) -> RunningServer:
    log_path = log_dir / f"{name}.log"
    log = open(log_path, "w")  # noqa: SIM115 - the child owns it; closed when the child exits
    proc = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    return RunningServer(name, f"127.0.0.1:{port}", proc, log_path)


class ServerSet:
    """Servers started together (their slow start-ups overlap), waited for, and always stopped together.

    Use as a context manager. `ready` maps names to servers that answered; `failed` maps names to
    why the others did not (e.g. a variant refused by the consistency guard).
    """

    def __init__(self) -> None:
        self.servers: dict[str, RunningServer] = {}
        self.ready: dict[str, RunningServer] = {}
        self.failed: dict[str, str] = {}

    def add(self, server: RunningServer) -> RunningServer:
        """Track a started server (stopped on exit)."""
        self.servers[server.name] = server
        return server

    def wait(self, probe: bytes, method: str, model: str | None = None) -> ServerSet:
        """Wait for every server still pending; see wait_ready."""
        for name, server in self.servers.items():
            if name in self.ready or name in self.failed:
                continue
            try:
                wait_ready(server, probe, method, model=model)
                self.ready[name] = server
            except RuntimeError as exc:
                self.failed[name] = str(exc)
        return self

    def __enter__(self) -> ServerSet:
        return self

    def __exit__(self, *exc_info) -> None:
        for server in self.servers.values():
            server.stop()
