"""`make loadtest` end to end: a short locust run passes its thresholds, and an impossible one fails the run."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUN_LOADTEST = ROOT / "loadtests" / "run_loadtest.py"


def run_loadtest(*args: str, timeout_s: float = 240) -> subprocess.CompletedProcess:
    command = [sys.executable, str(RUN_LOADTEST), "--users", "2", "--run-time", "3s", *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s, check=False)


def log_lines(done: subprocess.CompletedProcess) -> str:
    """Our own log lines and locust's error report, for assertion messages."""
    return "\n".join(line for line in (done.stdout + done.stderr).splitlines() if "batchwise" in line or "rror" in line)


def read_stats(report_dir: Path) -> dict[str, dict[str, str]]:
    with open(report_dir / "loadtest_stats.csv", newline="") as handle:
        return {row["Name"]: row for row in csv.DictReader(handle)}


@pytest.mark.slow
def test_smoke_run_starts_a_server_and_passes(model_repo, tmp_path):
    done = run_loadtest(
        "--repository", str(model_repo), "--report-dir", str(tmp_path),
        "--models", "mlp,strings", "--rows", "1,3", "--metadata-ratio", "0.2", "--users", "6",  # 2 per protocol
    )
    assert done.returncode == 0, log_lines(done)
    stats = read_stats(tmp_path)
    rest = ("REST predict mlp rows=1", "REST predict strings rows=3", "REST metadata mlp")
    for name in ("Predict mlp rows=1", "Predict mlp rows=3", "Predict strings rows=3", "GetModelMetadata mlp",
                 "ModelInfer mlp rows=1", "ModelInfer strings rows=3", "ModelMetadata mlp", *rest):  # all users ran
        assert int(stats[name]["Request Count"]) > 0, name
    assert stats["Aggregated"]["Failure Count"] == "0"
    assert (tmp_path / "loadtest.html").stat().st_size > 0
    assert "PASSED" in done.stderr


def test_impossible_threshold_fails_the_run(server, tmp_path):
    done = run_loadtest(
        "--host", server.target, "--report-dir", str(tmp_path), "--models", "mlp", "--rows", "2", "--min-rps", "1e9",
    )
    assert done.returncode == 1, log_lines(done)
    assert "THRESHOLD FAILED: throughput" in done.stderr, log_lines(done)
    assert int(read_stats(tmp_path)["Aggregated"]["Request Count"]) > 0


def test_unknown_model_fails_the_run(server, tmp_path):
    done = run_loadtest("--host", server.target, "--report-dir", str(tmp_path), "--models", "no-such-model")
    assert done.returncode == 1, log_lines(done)
    assert "NOT_FOUND" in done.stderr


def test_rest_only_run_against_an_http_host(server, tmp_path):
    done = run_loadtest(
        "--host", server.http_url, "--report-dir", str(tmp_path), "--models", "mlp", "--rows", "2",
        "--max-p99-ms", "10000",
    )  # fmt: skip
    assert done.returncode == 0, log_lines(done)
    stats = read_stats(tmp_path)
    assert int(stats["REST predict mlp rows=2"]["Request Count"]) > 0
    assert not any(name.startswith("Predict") for name in stats), sorted(stats)


def test_unknown_model_over_rest_fails_the_run(server, tmp_path):
    done = run_loadtest(
        "--host", server.target, "--rest-host", server.http_url, "--protocols", "tfserving_rest",
        "--report-dir", str(tmp_path), "--models", "no-such-model",
    )  # fmt: skip
    assert done.returncode == 1, log_lines(done)
    assert "NOT_FOUND" in done.stderr
