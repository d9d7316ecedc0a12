"""Start the real CLI (`python -m service`) as a subprocess and wait for it to be healthy."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(args: list[str], env: dict[str, str] | None = None, log_path: Path | None = None) -> subprocess.Popen:
    """Run `python -m service ARGS` from the repository root; stderr goes to log_path if given.

    The HTTP port is 0 (a free one) unless ARGS or `env` say otherwise, so that servers started by
    tests never fight over 8501.
    """
    stderr = open(log_path, "w") if log_path else subprocess.DEVNULL  # noqa: SIM115 - closed by the OS on exit
    return subprocess.Popen(
        [sys.executable, "-m", "service", *args],
        cwd=ROOT, env={**os.environ, "BATCHWISE_HTTP__PORT": "0", **(env or {})}, stdout=subprocess.DEVNULL,
        stderr=stderr,
    )


def health_status(target: str, service: str = "", timeout_s: float = 2.0) -> int | None:
    """The health status of `service`, or None if the server does not answer."""
    try:
        with grpc.insecure_channel(target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout_s).status
    except grpc.RpcError:
        return None


def wait_serving(target: str, proc: subprocess.Popen, timeout_s: float = 180) -> None:
    """Block until health says SERVING; raise if the process dies or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before becoming healthy")
        if health_status(target) == health_pb2.HealthCheckResponse.SERVING:
            return
        time.sleep(0.2)
    raise TimeoutError(f"server at {target} not SERVING after {timeout_s}s")
