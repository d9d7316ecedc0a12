"""The label-free quality gate: how closely a variant reproduces the source model on held-out rows."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AgreementGate:
    """Thresholds: classifiers need top-1 agreement >= min_top1; other outputs bounded absolute errors."""

    classify: bool
    min_top1: float = 0.97
    max_abs_error: float = 0.1
    max_mean_abs_error: float = 0.02

    def card(self) -> dict[str, float]:
        """The thresholds as the card's `quality_gate` numbers."""
        if self.classify:
            return {"min_top1_agreement": self.min_top1}
        return {"max_abs_error": self.max_abs_error, "max_mean_abs_error": self.max_mean_abs_error}

    def refusal(self, figures: Mapping[str, float | None]) -> str | None:
        """Why a variant with these figures is refused, or None when it passes."""
        if self.classify:
            if not figures["top1_agreement"] >= self.min_top1:
                return (
                    f"top-1 agreement {figures['top1_agreement']:.4f} with the source model is below "
                    f"{self.min_top1} ({figures['rows']} held-out rows)"
                )
            return None
        if figures["max_abs_error"] is None:
            return "outputs hold NaN or infinity where the source model's do not"
        if not figures["max_abs_error"] <= self.max_abs_error:
            return (
                f"max abs error {figures['max_abs_error']:.4g} vs the source model exceeds "
                f"{self.max_abs_error} ({figures['rows']} held-out rows)"
            )
        if not figures["mean_abs_error"] <= self.max_mean_abs_error:
            return (
                f"mean abs error {figures['mean_abs_error']:.4g} vs the source model exceeds "
                f"{self.max_mean_abs_error} ({figures['rows']} held-out rows)"
            )
        return None


def agreement(reference: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray]) -> dict:
    """Figures over all outputs: rows, max and mean absolute error, top-1 agreement (worst output).

    Top-1 uses argmax over the last axis, or > 0.5 for a single score per row. An error is None
    (JSON null) when an output holds NaN or infinity; the gate refuses that.
    """
    max_errors, mean_errors, top1 = [], [], []
    for name, expected in reference.items():
        want = np.asarray(expected, dtype=np.float64)
        got = np.asarray(candidate[name], dtype=np.float64).reshape(want.shape)
        diff = np.abs(got - want)
        finite = bool(np.all(np.isfinite(diff)))
        max_errors.append(float(np.max(diff, initial=0.0)) if finite else None)
        mean_errors.append(float(np.mean(diff)) if finite else None)
        top1.append(float(np.mean(_classes(got) == _classes(want))))
    rows = len(next(iter(reference.values())))
    return {
        "rows": rows,
        "max_abs_error": _worst(max_errors),
        "mean_abs_error": _worst(mean_errors),
        "top1_agreement": min(top1),
    }


def _worst(errors: list[float | None]) -> float | None:
    return None if None in errors else max(errors)


def _classes(outputs: np.ndarray) -> np.ndarray:
    flat = outputs.reshape(len(outputs), -1)
    return (flat[:, 0] > 0.5).astype(np.int64) if flat.shape[1] == 1 else flat.argmax(axis=1)
