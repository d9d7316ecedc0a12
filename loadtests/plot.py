"""The benchmark's PNG: throughput and p99 against concurrency, one line per configuration (matplotlib)."""

from __future__ import annotations

from pathlib import Path


def plot(result: dict, path: Path) -> None:
    """Throughput and p99 against concurrency, one line per configuration (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 8), sharex=True)
    for name, points in result["sweep"].items():
        n = [p["concurrency"] for p in points]
        top.plot(n, [p["throughput_rps"] for p in points], marker="o", label=name)
        bottom.plot(n, [p["p99_ms"] for p in points], marker="o", label=name)
    for name, points in result.get("peer", {}).get("points", {}).items():
        n = [p["concurrency"] for p in points]
        label = f"{name} (peer run)"
        top.plot(n, [p["throughput_rps"] for p in points], marker="x", linestyle=":", label=label)
        bottom.plot(n, [p["p99_ms"] for p in points], marker="x", linestyle=":", label=label)
    compute = result["ratios"].get("compute_ceiling_rows_s")
    if compute:
        top.axhline(compute, linestyle="--", color="grey", label="compute ceiling (in-process)")
    top.set_ylabel("requests/s (one row each)")
    bottom.set_ylabel("p99 latency (ms)")
    bottom.set_yscale("log")
    bottom.set_xlabel("concurrent clients (closed loop)")
    bottom.set_xscale("log", base=2)
    m = result["machine"]
    top.set_title(f"MNIST CNN, {m['nproc']} cores {m['cpu_model']}, {result['date'][:10]}", fontsize=9)
    top.legend(fontsize=8)
    bottom.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
