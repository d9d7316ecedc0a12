"""`make loadtest`: serve the repository on loopback (or use --host), run locust headless, write CSV + HTML reports.

    python loadtests/run_loadtest.py [--host HOST:PORT | --repository DIR] [--users 16] [--run-time 30s] \
        [--report-dir loadtests/reports] [--server-arg=--batching.max-batch-size=32 ...] [LOCUST OPTIONS ...]

Any option this script does not know goes to locust and the locustfile (--models, --rows, --variant,
--metadata-ratio, --protocols, --rest-host, --max-failure-ratio, --max-p95-ms, --max-p99-ms, --min-rps, ...).
Without --host the server is started on 127.0.0.1 on free gRPC and HTTP ports and stopped afterwards, so load
only goes to loopback or the given host; its users are split between gRPC and TF Serving REST (--protocols).
Exit status: locust's (0 when every threshold held, 1 when one failed), 2 when the setup failed.
"""

from __future__ import annotations

import argparse
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parents[1]
LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
DEFAULT_REPORT_DIR = Path(__file__).resolve().parent / "reports"
LOCUST_EXTRA_S = 120.0  # spawn, discovery, stop timeout and report writing on top of --run-time
SETUP_FAILED = 2


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--host", help="target HOST:PORT of a running server; default: start one on loopback")
    parser.add_argument("--repository", type=Path, default=ROOT / "model_repository", help="served without --host")
    parser.add_argument("--users", type=int, default=16, help="concurrent locust users (closed loop)")
    parser.add_argument("--spawn-rate", type=float, default=None, help="users started per second (default: all)")
    parser.add_argument("--run-time", default="30s", help="locust run time, e.g. 30s, 2m, 1h30m")
    parser.add_argument("--report-dir", type=Path, default=DEFAULT_REPORT_DIR, help="CSV and HTML reports go here")
    parser.add_argument("--report-name", default="loadtest", help="prefix of the report files")
    parser.add_argument("--server-arg", action="append", default=[], help="extra `python -m service` argument")
    parser.add_argument("--ready-timeout-s", type=float, default=300.0, help="wait this long for the server")
    return parser.parse_known_args(argv)


def run_time_s(text: str) -> float:
    """locust's duration syntax ("90", "30s", "2m", "1h30m") in seconds; raises ValueError otherwise."""
    if text.isdigit():
        return float(text)
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", text.strip())
    if not text.strip() or parts is None:
        raise ValueError(f"bad run time {text!r}")
    hours, minutes, seconds = (int(p or 0) for p in parts.groups())
    return hours * 3600.0 + minutes * 60.0 + seconds


def has_models(repository: Path) -> bool:
    """True when some `<repository>/<model>/<positive integer>/` folder exists."""
    if not repository.is_dir():
        return False
    return any(v.is_dir() and v.name.isdigit() and int(v.name) > 0 for m in repository.iterdir() if m.is_dir()
               for v in m.iterdir())


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(
    repository: Path, port: int, extra_args: list[str], log_path: Path, http_port: int | None = None
) -> subprocess.Popen:
    """Start `python -m service` on 127.0.0.1:`port` (and HTTP on `http_port`, or a free port) serving
    `repository`; its output goes to `log_path`."""
    args = [sys.executable, "-m", "service", "--repository.path", str(repository), "--server.host", "127.0.0.1",
            "--server.port", str(port), "--metrics.port", str(free_port()), "--http.host", "127.0.0.1",
            "--http.port", str(http_port or free_port()), *extra_args]
    log = open(log_path, "wb")  # noqa: SIM115 - the child owns it; closed when this process exits
    return subprocess.Popen(args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)


def wait_serving(target: str, proc: subprocess.Popen, timeout_s: float) -> None:
    """Block until the server's health is SERVING; raise RuntimeError if it exits or times out."""
    deadline = time.monotonic() + timeout_s
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited with status {proc.returncode}")
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=2)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.3)
    raise RuntimeError(f"the server at {target} was not SERVING after {timeout_s} s")


def stop_server(proc: subprocess.Popen, grace_s: float = 30.0) -> None:
    """SIGTERM (graceful drain), then SIGKILL after `grace_s`."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def locust_command(args: argparse.Namespace, target: str, locust_args: list[str]) -> list[str]:
    """The headless locust command line: bounded users and time, CSV + HTML reports in --report-dir."""
    prefix = args.report_dir / args.report_name
    return [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", target,
        "--users", str(args.users), "--spawn-rate", str(args.spawn_rate or args.users), "--run-time", args.run_time,
        "--stop-timeout", "5", "--csv", str(prefix), "--html", f"{prefix}.html", "--only-summary", *locust_args,
    ]


def run_locust(args: argparse.Namespace, target: str, locust_args: list[str]) -> int:
    """Run locust to completion (killed if it overruns --run-time by LOCUST_EXTRA_S); return its exit status."""
    timeout_s = run_time_s(args.run_time) + LOCUST_EXTRA_S
    try:
        done = subprocess.run(locust_command(args, target, locust_args), cwd=ROOT, timeout=timeout_s, check=False)
        return done.returncode
    except subprocess.TimeoutExpired:
        print(f"locust did not stop within {timeout_s:.0f} s; killed", file=sys.stderr)
        return 1


def main(argv: list[str] | None = None) -> int:
    args, locust_args = parse_args(argv)
    args.report_dir.mkdir(parents=True, exist_ok=True)
    if args.host:
        status = run_locust(args, args.host, locust_args)
    else:
        if not has_models(args.repository):
            print(f"{args.repository} holds no model version: run `make demo-models` first", file=sys.stderr)
            return SETUP_FAILED
        port, http_port = free_port(), free_port()
        server_log = args.report_dir / f"{args.report_name}_server.log"
        proc = start_server(args.repository, port, args.server_arg, server_log, http_port)
        if not any(a.startswith("--rest-host") for a in locust_args):
            locust_args = [*locust_args, "--rest-host", f"http://127.0.0.1:{http_port}"]
        try:
            wait_serving(f"127.0.0.1:{port}", proc, args.ready_timeout_s)
            status = run_locust(args, f"127.0.0.1:{port}", locust_args)
        except RuntimeError as exc:
            print(f"{exc}; see {server_log}", file=sys.stderr)
            return SETUP_FAILED
        finally:
            stop_server(proc)
    print(f"reports: {args.report_dir / args.report_name}_stats.csv, {args.report_dir / args.report_name}.html "
          f"(exit status {status})")
    return status


if __name__ == "__main__":
    sys.exit(main())
