"""Start time and RSS per worker: `python -m loadtests.worker_startup --repository R [--workers 1,2] [--variant int8]`.

Starts `python -m service` (from --source, default this checkout) with each worker count, times
how long until health says SERVING (every worker loaded), and reads the RSS of the supervisor and
of each worker from /proc. Prints one JSON object. Run it with --source pointing at an older
checkout to compare (e.g. before GPU detection stopped importing TensorFlow).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from loadtests.servers import ROOT, free_port, health_status

SERVING = 1


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def measure(source: Path, repository: Path, workers: int, variant: str, env: dict[str, str]) -> dict:
    """One start: seconds to SERVING and RSS (MiB) of the supervisor and each worker once serving."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "service",
        "--repository.path",
        str(repository),
        "--server.port",
        str(port),
        "--metrics.port",
        "0",
        "--runtime.variant",
        variant,
        "--repository.poll-interval-s",
        "0",
    ]
    if workers > 1:
        command += ["--server.workers", str(workers)]
    started = time.monotonic()
    proc = subprocess.Popen(
        command, cwd=source, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        while health_status(f"127.0.0.1:{port}", timeout_s=1.0) != SERVING:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}")
            time.sleep(0.05)
        serving_s = time.monotonic() - started
        spawned = [c for c in children(proc.pid) if "spawn_main" in Path(f"/proc/{c}/cmdline").read_text()]
        return {
            "workers": workers,
            "serving_s": round(serving_s, 2),
            "rss_mib_main": round(rss_mib(proc.pid)),
            "rss_mib_workers": [round(rss_mib(c)) for c in spawned],
            "tensorflow_loaded": _tf_loaded([proc.pid, *spawned]),
            "load_average": os.getloadavg()[0],
        }
    finally:
        proc.terminate()
        proc.wait(60)


def _tf_loaded(pids: list[int]) -> bool:
    """Whether any of the processes has TensorFlow's shared library mapped."""
    return any("libtensorflow" in Path(f"/proc/{pid}/maps").read_text() for pid in pids)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.worker_startup", description=__doc__.split("\n")[0])
    parser.add_argument("--repository", type=Path, required=True)
    parser.add_argument("--source", type=Path, default=ROOT, help="checkout whose `service` package to run")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--variant", default="int8")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    runs = [
        measure(args.source, args.repository, int(n), args.variant, {})
        for _ in range(args.repeats)
        for n in args.workers.split(",")
    ]
    print(json.dumps({"source": str(args.source), "variant": args.variant, "runs": runs}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
