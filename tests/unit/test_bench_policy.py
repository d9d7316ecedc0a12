"""The batching-policy bench section's arithmetic: p99 from histogram scrapes, ratios against targets."""

from __future__ import annotations

from loadtests import bench_policy


def point(n: int, rps: float, p50_ms: float) -> dict:
    return {"concurrency": n, "throughput_rps": rps, "p50_ms": p50_ms}


def phase(p99_ms: float | None, refused: float = 0.0) -> dict:
    return {"server_p99_ms": p99_ms, "refused_fraction": refused, "queue_wait_p99_ms": 1.5, "compute_p99_ms": 2.25}


def test_p99_is_the_upper_bound_of_the_bucket_holding_it():
    before = {0.001: 10, 0.002: 10, 0.005: 10, float("inf"): 10}
    after = {0.001: 10 + 900, 0.002: 10 + 995, 0.005: 10 + 1000, float("inf"): 10 + 1000}
    assert bench_policy.p99_ms(before, after) == (2.0, 1000)  # 99% of the new 1000 are <= 2 ms
    assert bench_policy.p99_ms(after, after) == (None, 0)


def test_one_scrape_reads_the_codes_and_each_histogram_of_the_model(monkeypatch):
    text = "\n".join(
        [
            "# TYPE batchwise_predict_requests_total counter",
            'batchwise_predict_requests_total{model="m",code="OK"} 7',
            'batchwise_predict_requests_total{model="m",code="UNAVAILABLE"} 2',
            'batchwise_predict_requests_total{model="other",code="OK"} 100',
            "# TYPE batchwise_compute_seconds histogram",
            'batchwise_compute_seconds_bucket{model="m",variant="a",le="0.001"} 3',
            'batchwise_compute_seconds_bucket{model="m",variant="b",le="0.001"} 1',
            'batchwise_compute_seconds_bucket{model="m",variant="a",le="+Inf"} 4',
            'batchwise_compute_seconds_count{model="m",variant="a"} 4',
            "",
        ]
    )

    class Reply:
        def read(self) -> bytes:
            return text.encode()

    monkeypatch.setattr(bench_policy.urllib.request, "urlopen", lambda url, timeout: Reply())
    found = bench_policy.scrape("http://x/metrics", "m")
    assert found["codes"] == {"OK": 7, "UNAVAILABLE": 2}  # the other model's calls are not counted
    assert found["compute"] == {0.001: 4, float("inf"): 4}  # label sets summed, _count left out
    assert found["server"] == {} and found["queue_wait"] == {}


def test_the_buckets_resolve_both_slos():
    assert {0.01, 0.05} <= set(bench_policy.BUCKETS_S)
    assert sorted(set(bench_policy.BUCKETS_S)) == bench_policy.BUCKETS_S


def test_ratios_hold_or_not_against_each_target():
    fixed = {f"fixed-{t}": [point(8, 1000 + t, 5), point(64, 2000, 30)] for t in bench_policy.FIXED_TIMEOUTS_MS}
    result = {
        "closed": {
            "off": [point(1, 500, 2.0), point(64, 600, 100)],
            "adaptive": [point(1, 480, 2.1), point(8, 990, 5), point(64, 1850, 30)],
            **fixed,
        },
        "slo": {"10": {"steady": phase(9.5), "step": [phase(3.0), phase(12.0, 0.1), phase(4.0)]}},
    }
    rows = bench_policy.ratios(result)
    one, eight, sixty_four_fixed, sixty_four_off, *slo_rows = rows
    assert one["holds"] and abs(one["value"] - 2.1 / 2.0) < 1e-9  # p50 ratio 1.05
    assert eight["holds"] and "fixed-5" in eight["name"]  # the best fixed configuration is named
    assert not sixty_four_fixed["holds"] and abs(sixty_four_fixed["value"] - 0.925) < 1e-9
    assert sixty_four_off["holds"] and sixty_four_off["value"] > 3
    assert [r["holds"] for r in slo_rows] == [True, True, False, True]
    assert "(queue 1.5, compute 2.25)" in slo_rows[0]["name"]
    text = bench_policy.render(
        {
            **result,
            "saturation_rps": 1850,
            "load_average_start": [1.0, 0, 0],
            "load_average_end": [2.0, 0, 0],
            "ratios": bench_policy.ratios(result),
        }
    )
    assert "DOES NOT HOLD" in text and "target <= 1.15" in text
