"""Benchmark bookkeeping: the peer ratios against issue 8's targets, the peer table, and the metrics hot path timer."""

from __future__ import annotations

import time

from loadtests import bench, metrics_cost, report


def _point(concurrency: int, rps: float, p50: float, p99: float, errors: dict | None = None) -> dict:
    return {"concurrency": concurrency, "throughput_rps": rps, "p50_ms": p50, "p99_ms": p99, "errors": errors or {}}


PEER = {
    "version": "1.7.1", "parallel_workers": 1, "max_batch_size": 64, "max_batch_time_ms": 5.0,
    "points": {
        "batchwise": [_point(1, 300, 3.0, 4.0), _point(64, 3300, 20.0, 30.0)],
        "mlserver": [_point(1, 120, 8.0, 9.0), _point(64, 1000, 50.0, 90.0, {"UNAVAILABLE": 2})],
    },
}


def test_peer_ratios_compare_against_the_issue_targets():
    ratios = report.peer_ratios(PEER)
    assert ratios["over_mlserver_throughput_64"]["value"] == 3.3
    assert ratios["over_mlserver_throughput_64"]["met"] is True
    assert abs(ratios["over_mlserver_p99_64"]["value"] - 30 / 90) < 1e-9
    assert ratios["over_mlserver_p99_64"]["met"] is True
    assert ratios["over_mlserver_p50_1"]["value"] == 3.0 / 8.0
    slower = {**PEER, "points": {**PEER["points"], "batchwise": [_point(1, 300, 5.0, 6.0), _point(64, 2000, 20, 95)]}}
    missed = report.peer_ratios(slower)
    assert [missed[k]["met"] for k in ("over_mlserver_throughput_64", "over_mlserver_p99_64",
                                       "over_mlserver_p50_1")] == [False, False, False]


def test_extra_rounds_at_64_are_pooled_and_listed_pair_by_pair():
    rounds = {"batchwise": [_point(64, 2700, 20.0, 40.0)], "mlserver": [_point(64, 1000, 50.0, 110.0)]}
    ratios = report.peer_ratios({**PEER, "rounds_64": rounds})
    assert ratios["over_mlserver_throughput_64"]["value"] == (3300 + 2700) / (1000 + 1000)
    assert abs(ratios["over_mlserver_p99_64"]["value"] - (30 + 40) / (90 + 110)) < 1e-9
    assert ratios["over_mlserver_throughput_64_per_pair"] == [3.3, 2.7]
    table = report.render_peer({**PEER, "rounds_64": rounds})
    assert len([line for line in table.splitlines() if line.startswith("| 64 |")]) == 2
    assert "2.70" in report.render_ratios(ratios, {})


def test_peer_table_has_a_row_per_concurrency_with_ratios_and_errors():
    table = report.render_peer(PEER)
    rows = [line for line in table.splitlines() if line.startswith("| 1 |") or line.startswith("| 64 |")]
    assert len(rows) == 2
    assert "3.30" in rows[1] and "mlserver UNAVAILABLE" in rows[1]
    assert "MLServer 1.7.1 (parallel_workers 1)" in table


def test_targets_are_read_against_mlservers_best_configuration():
    two = {
        **PEER, "parallel_workers": {"mlserver-w0": 0, "mlserver-w1": 1},
        "points": {
            "batchwise": [_point(1, 300, 3.0, 4.0), _point(64, 3300, 20.0, 30.0)],
            "mlserver-w0": [_point(1, 150, 7.0, 8.0), _point(64, 1500, 40.0, 60.0)],
            "mlserver-w1": [_point(1, 120, 8.0, 9.0), _point(64, 1000, 50.0, 50.0)],
        },
        "rounds_64": {"batchwise": [_point(64, 2700, 20.0, 40.0)], "mlserver-w0": [_point(64, 1500, 40.0, 60.0)],
                      "mlserver-w1": [_point(64, 1000, 50.0, 50.0)]},
    }
    ratios = report.peer_ratios(two)
    assert ratios["over_mlserver_throughput_64"]["value"] == 2.0  # (3300 + 2700) / (1500 + 1500): the faster one
    assert ratios["over_mlserver_throughput_64"]["met"] is False
    assert ratios["over_mlserver-w0_throughput_64"] == 2.0 and ratios["over_mlserver-w1_throughput_64"] == 3.0
    assert ratios["over_mlserver_throughput_64_per_pair"] == [2.2, 1.8]
    assert ratios["over_mlserver_p99_64"]["value"] == 35.0 / 50.0  # the lowest p99 of the two
    assert ratios["over_mlserver_p50_1"]["value"] == 3.0 / 7.0  # the lowest p50 of the two
    table = report.render_peer(two)
    assert "(parallel_workers 0)" in table and "(parallel_workers 1)" in table
    assert len([line for line in table.splitlines() if line.startswith("| 64 |")]) == 4


def test_metrics_hot_path_is_timed_part_by_part():
    measured = metrics_cost.measure(2_000)
    parts = ("interceptor_us", "predict_us", "batch_us")
    assert all(measured[p] >= 0 for p in parts)
    assert measured["predict_us"] > 0 and measured["batch_us"] > 0
    assert abs(measured["total_us"] - sum(measured[p] for p in parts)) < 0.01


def test_served_int8_is_compared_with_the_savedmodel_point_measured_next_to_it():
    later = {"throughput_rps": 3300.0}
    table = {
        "savedmodel": {"served_64": later, "inproc_b32_rows_s": 100.0, "size_bytes": 1000},
        "int8": {"served_64": {"throughput_rps": 2900.0, "savedmodel_adjacent": {"throughput_rps": 2800.0}},
                 "inproc_b32_rows_s": 350.0, "size_bytes": 280},
        "float32": {"size_bytes": 1000},
    }
    ratios = report.variant_ratios(table, "")
    assert abs(ratios["int8_over_savedmodel_served_64"]["value"] - 2900 / 2800) < 1e-9
    assert ratios["int8_over_savedmodel_served_64"]["met"] is True
    del table["int8"]["served_64"]["savedmodel_adjacent"]  # older results: the SavedModel row's own point
    assert abs(report.variant_ratios(table, "")["int8_over_savedmodel_served_64"]["value"] - 2900 / 3300) < 1e-9


def test_a_second_run_on_the_same_day_keeps_the_first_runs_files(tmp_path):
    now = time.strptime("2026-12-06 14:05", "%Y-%m-%d %H:%M")
    assert bench.results_stem(tmp_path, "2cpu-vm", now) == "2026-12-06-2cpu-vm"
    (tmp_path / "2026-12-06-2cpu-vm.json").write_text("{}")
    assert bench.results_stem(tmp_path, "2cpu-vm", now) == "2026-12-06-2cpu-vm-1405"
