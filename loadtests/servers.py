"""The one harness for server processes: start `python -m service` (or a peer), probe it, stop it.

Used by the benchmark, the load test, the soak and reload runs, and by the end-to-end tests alike:
    server = start_server(["--repository.path", repo])   # a free loopback port is added
    server.wait_serving()                                  # gRPC health SERVING, else RuntimeError + log tail
    server.stop()                                          # SIGTERM (graceful drain), SIGKILL after a grace
It lives in loadtests/ (not service/) because it is tooling around the server, not part of what a
node runs; tests import it as a public module.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service.api import get_model_status_pb2

ROOT = Path(__file__).resolve().parents[1]
READY_TIMEOUT_S = 240.0
STOP_TIMEOUT_S = 30.0
SERVING = health_pb2.HealthCheckResponse.SERVING
STATUS_METHOD = "/tensorflow.serving.ModelService/GetModelStatus"
END_STATE = get_model_status_pb2.ModelVersionStatus.END


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct TCP ports that were free on `host` a moment ago (held together while picked)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind((host, 0))
        return [sock.getsockname()[1] for sock in sockets]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on `host` a moment ago."""
    return free_ports(1, host)[0]


def health_status(target: str, service: str = "", timeout_s: float = 2.0) -> int | None:
    """The gRPC health status of `service` ("" = the whole server) at `target`, or None if it does not answer."""
    try:
        with grpc.insecure_channel(target) as channel:
            request = health_pb2.HealthCheckRequest(service=service)
            return health_pb2_grpc.HealthStub(channel).Check(request, timeout=timeout_s).status
    except grpc.RpcError:
        return None


@dataclass
class RunningServer:
    """A server subprocess: where it listens, its pid, and where its output goes. A context manager (stops)."""

    name: str
    target: str
    proc: subprocess.Popen
    log_path: Path | None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def poll(self) -> int | None:
        """The exit status, or None while it runs."""
        return self.proc.poll()

    def wait(self, timeout_s: float | None = None) -> int:
        """Wait for the process to exit; return its status. Raises subprocess.TimeoutExpired."""
        return self.proc.wait(timeout_s)

    def signal(self, sig: int = signal.SIGTERM) -> None:
        """Send `sig` (SIGTERM starts the graceful drain)."""
        self.proc.send_signal(sig)

    def cpu_s(self) -> float:
        """CPU time (user + system, all threads) the process has used so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def log_tail(self, chars: int = 2000) -> str:
        """The end of the process's output ("" without a log file)."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-chars:]

    def health(self, service: str = "", timeout_s: float = 2.0) -> int | None:
        """The gRPC health status of `service` ("" = the whole server), or None if it does not answer."""
        return health_status(self.target, service, timeout_s)

    def wait_serving(self, timeout_s: float = READY_TIMEOUT_S) -> RunningServer:
        """Block until health says SERVING; return self.

        Raises RuntimeError (with the log's tail) if the process exits first or time runs out;
        the process is stopped then.
        """
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.poll()} before it was SERVING; log tail:\n"
                                   f"{self.log_tail()}")
            if self.health() == SERVING:
                return self
            time.sleep(0.2)
        self.stop()
        tail = self.log_tail()
        raise RuntimeError(f"{self.name} at {self.target} not SERVING after {timeout_s} s; log tail:\n{tail}")

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM, then SIGKILL if it does not exit within `timeout_s`; return the exit status."""
        if self.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                return self.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.wait()

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


def start_server(
    args: Sequence[str] = (), *, port: int | None = None, env: dict[str, str] | None = None,
    log_path: Path | None = None, name: str = "batchwise", entry: Sequence[str] = ("-m", "service"),
) -> RunningServer:
    """`python -m service ARGS --server.port PORT` from the repository root, BATCHWISE_* `env` on top of ours.

    `port` defaults to a free one, and the HTTP port to a free one (BATCHWISE_HTTP__PORT=0) unless `env`
    or `args` name one, so that servers started together never fight over 8501. stdout and stderr go to
    `log_path` (or nowhere). `entry` replaces `-m service` (e.g. a script that wraps the server for
    profiling). Does not wait: see wait_serving.
    """
    port = port or free_port()
    command = [sys.executable, *entry, *args, "--server.port", str(port)]
    return spawn(name, command, {"BATCHWISE_HTTP__PORT": "0", **(env or {})}, port, log_path)


def start_ours(
    name: str, repository: Path, args: Sequence[str], *, env: dict[str, str], log_dir: Path,
    entry: Sequence[str] = ("-m", "service"),
) -> RunningServer:
    """start_server serving `repository` without polling it, logging to `log_dir/<name>.log` (the benchmark's)."""
    args = ["--repository.path", str(repository), "--repository.poll-interval-s", "0", *args]
    return start_server(args, env=env, log_path=log_dir / f"{name}.log", name=name, entry=entry)


def start_fixed(name: str, response_file: Path, log_dir: Path, event_loop: str = "auto") -> RunningServer:
    """The framework-ceiling server (loadtests/fixed_server.py) answering with `response_file`'s bytes,
    on the event loop our server uses (`event_loop`, as server.event_loop)."""
    port = free_port()
    command = [sys.executable, "-m", "loadtests.fixed_server", "--port", str(port),
               "--response-file", str(response_file), "--event-loop", event_loop]
    return spawn(name, command, {}, port, log_dir / f"{name}.log")


def spawn(name: str, command: list[str], env: dict[str, str], port: int, log_path: Path | None) -> RunningServer:
    """Run `command` from the repository root with `env` on top of ours; output to `log_path` (or nowhere)."""
    log = open(log_path, "w") if log_path else subprocess.DEVNULL  # noqa: SIM115 - the child owns it
    try:
        proc = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT)
    finally:
        if log_path:
            log.close()
    return RunningServer(name, f"127.0.0.1:{port}", proc, log_path)


def wait_ready(
    server: RunningServer, probe: bytes, method: str, *, model: str | None = None, timeout_s: float = READY_TIMEOUT_S
) -> None:
    """Block until `method` answers `probe` with OK (for servers without gRPC health, e.g. the fixed one).

    With `model`, a version of it that failed to load (GetModelStatus: END with an error, e.g. the
    consistency guard refused the only variant allowed) fails at once instead of at the timeout.
    Raises RuntimeError (with the log tail) when the server does not become ready; it is stopped then.
    """
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    with grpc.insecure_channel(server.target) as channel:
        call = channel.unary_unary(method)
        while time.monotonic() < deadline and server.poll() is None:
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
    server.stop()
    raise RuntimeError(f"{server.name} at {server.target} did not become ready ({last}); log tail:\n"
                       f"{server.log_tail()}")


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
