"""`make bench` in its quickest form: the harness runs end to end and writes valid JSON. Never asserts speed."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from loadtests.servers import ROOT


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_bench_quick_run_writes_results(tmp_path):
    command = [
        sys.executable, "-m", "loadtests.bench", "--quick", "--duration-s", "1", "--warmup-s", "0.2",
        "--concurrency", "1,8", "--variants", "savedmodel,int8",
        "--results-dir", str(tmp_path), "--machine", "smoke",
    ]
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=880, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    (json_path,) = tmp_path.glob("*-smoke.json")
    result = json.loads(json_path.read_text())
    expected = {"machine", "versions", "command", "date", "compute_ceiling", "sweep", "variants", "overload", "ratios"}
    assert expected <= set(result)
    assert result["machine"]["nproc"] >= 1 and result["machine"]["cpu_model"]
    for name in ("framework_ceiling", "batched", "unbatched"):
        points = result["sweep"][name]
        assert [p["concurrency"] for p in points] == [1, 8]
        assert all(p["ok"] + sum(p["errors"].values()) > 0 for p in points)
    assert set(result["variants"]["rows"]) >= {"savedmodel", "int8"}
    assert [p["factor"] for p in result["overload"]["phases"]] == [0.5, 0.8, 2.0, 0.5]
    assert set(result["overload"]["refusal_path_64"]["errors"]) == {"NOT_FOUND"}
    assert result["metrics"]["hot_path"]["total_us"] > 0
    assert len(result["metrics"]["on"]) == len(result["metrics"]["off"]) == 2  # ABBA
    assert "peer" not in result  # --quick leaves MLServer out (its venv is a TensorFlow install)
    protocols = result["protocols"]["points"]  # the doors, ABBA: one round with --quick
    assert {door: len(points) for door, points in protocols.items()} == {"tfserving_grpc": 2, "v2_grpc": 2}
    assert all(p["ok"] > 0 and not p["errors"] for points in protocols.values() for p in points)
    assert result["ratios"]["v2_grpc_over_tfserving_grpc_64"]["target"] == 0.9
    assert (tmp_path / json_path.name.replace(".json", ".png")).stat().st_size > 0
    assert "Ratios and targets" in proc.stdout
    policy = result["policy"]  # the batching-policy section (loadtests/bench_policy.py)
    assert {p["concurrency"] for p in policy["closed"]["adaptive"]} == {1, 8, 64}
    assert set(policy["slo"]) == {"10", "50"} and all(len(s["step"]) == 3 for s in policy["slo"].values())
    assert all("holds" in row and "target" in row for row in policy["ratios"])
    steady = policy["slo"]["50"]["steady"]  # where the time went: queue wait and batch compute, from the same scrapes
    assert steady["server_p99_ms"] > 0 and steady["queue_wait_p99_ms"] >= 0 and steady["compute_p99_ms"] > 0
    assert "Batching policy (issue 19)" in proc.stdout
    rest = result["rest"]  # the REST section (loadtests/bench_rest.py): h2load points and the HTTP idle pairs
    assert [p["concurrency"] for p in rest["rest"]["batchwise"]] == [1, 64]
    assert all(p["ok"] > 0 and not p["errors"] for p in rest["rest"]["batchwise"])
    assert len(rest["grpc_http_idle"]["on"]) == len(rest["grpc_http_idle"]["off"]) == 2  # ABBA
    assert result["ratios"]["grpc_http_idle_over_http_off_64"]["value"] > 0
    assert "grpc_http_idle_over_http_off_64" in proc.stdout
    workers = result["workers"]  # the workers section: h2load against server.workers 1 and 2
    assert set(workers["ratios"]) == {"throughput_2_vs_1", "cpu_per_request_2_vs_1", "p50_1_stream_2_vs_1"}
    assert all(len(points) == 2 for points in workers["h2load"].values())  # two interleaved rounds each
    assert all(p["server_ok"] > 0 for points in workers["h2load"].values() for p in points)
    assert len(workers["workers_1_at_share"]) == 2 and workers["workers_1_at_share_pooled"]["all_valid"]
    assert set(workers["explained"]) == {"cpu_per_request_1_at_share_vs_1", "cpu_per_request_2_vs_1_at_share"}
    assert "Workers (h2load" in proc.stdout
