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
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: make the loadtests package importable

from loadtests.servers import free_port, start_server  # noqa: E402

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
        server_log = args.report_dir / f"{args.report_name}_server.log"
        http_port = free_port()
        server_args = ["--repository.path", str(args.repository), "--server.host", "127.0.0.1",
                       "--metrics.port", str(free_port()), "--http.host", "127.0.0.1", "--http.port", str(http_port),
                       *args.server_arg]
        if not any(a.startswith("--rest-host") for a in locust_args):
            locust_args = [*locust_args, "--rest-host", f"http://127.0.0.1:{http_port}"]
        with start_server(server_args, log_path=server_log) as server:
            try:
                server.wait_serving(args.ready_timeout_s)
            except RuntimeError as exc:
                print(f"{exc}\nsee {server_log}", file=sys.stderr)
                return SETUP_FAILED
            status = run_locust(args, server.target, locust_args)
    print(f"reports: {args.report_dir / args.report_name}_stats.csv, {args.report_dir / args.report_name}.html "
          f"(exit status {status})")
    return status


if __name__ == "__main__":
    sys.exit(main())
