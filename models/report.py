"""Plain-text output of a run: per-epoch progress lines and the final summary table."""

from __future__ import annotations

import sys
from typing import TextIO

COLUMNS = ("variant", "interface", "published", "{metric}", "size", "gzip", "latency_ms", "note")


class Reporter:
    """Writes progress (hidden by --quiet) and results (always) to a text stream, default stdout."""

    def __init__(self, quiet: bool = False, stream: TextIO | None = None) -> None:
        self.quiet = quiet
        self._stream = stream

    def _write(self, line: str) -> None:
        stream = self._stream or sys.stdout
        stream.write(line + "\n")
        stream.flush()

    def progress(self, line: str) -> None:
        """A progress line; suppressed by --quiet."""
        if not self.quiet:
            self._write(line)

    def result(self, line: str) -> None:
        """A result line; always shown."""
        self._write(line)


def _size(value: int | None) -> str:
    if value is None:
        return "-"
    if value >= 1024 * 1024:
        return f"{value / (1024 * 1024):.2f} MiB"
    if value >= 1024:
        return f"{value / 1024:.1f} KiB"
    return f"{value} B"


def _row(name: str, variant: dict, metric: str) -> list[str]:
    value = variant.get(metric, variant.get("agreement", {}).get(metric))
    latency = variant.get("latency_ms_batch1")
    return [
        name,
        variant.get("interface", "-"),
        "yes" if variant.get("published") else "NO",
        "-" if value is None else f"{value:.4f}",
        _size(variant.get("size_bytes")),
        _size(variant.get("gzip_size_bytes")),
        "-" if latency is None else f"{latency:.3f}",
        variant.get("refused_reason", ""),
    ]


def _metric(card: dict) -> str:
    """The column to show: the labelled metric, else the label-free gate's figure (published models)."""
    reference = card["variants"].get("savedmodel", {})
    if "recipe" in card or "accuracy" in reference or "mse" in reference:
        return "mse" if card.get("task") == "regression" else "accuracy"
    return "top1_agreement" if card.get("task") in ("classification", "binary") else "max_abs_error"


def summary_table(card: dict) -> str:
    """Render the card's variants as an aligned plain-text table, preceded by a title line."""
    metric = _metric(card)
    header = [column.format(metric=metric) for column in COLUMNS]
    rows = [_row(name, variant, metric) for name, variant in card["variants"].items()]
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    origin = f"recipe {card['recipe']}" if "recipe" in card else f"source {card.get('source', {}).get('path')}"
    lines = [f"summary: {card['name']} version {card['version']} ({origin}, task {card.get('task', 'unknown')})"]
    for cells in [header, *rows]:
        lines.append("  ".join(str(cell).ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip())
    for phase, value in card.get("phases", {}).items():
        lines.append(f"phase {phase}: test {metric} {value:.4f}")
    pruning = card.get("pruning")
    if pruning:
        lines.append(f"pruning: target sparsity {pruning['target_sparsity']:.2f}, "
                     f"achieved {pruning['achieved_sparsity']:.4f} over {pruning['weights']} weights")
    for note in card.get("notes", []):
        lines.append(f"note: {note}")
    return "\n".join(lines)
