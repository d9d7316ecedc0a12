"""Pure-numpy scoring of model outputs and the quality gate that compares a variant with the SavedModel."""

from __future__ import annotations

import numpy as np

# Float noise between runtimes must not trip a threshold of 0: accuracy is a fraction of rows and
# differs only by whole rows, while an MSE differs by ~1e-7 relative between TF and LiteRT kernels.
_EPSILON_POINTS = 1e-9
_EPSILON_PERCENT = 1e-3


def metric_name(task: str) -> str:
    """`accuracy` for classification tasks, `mse` for regression."""
    return "mse" if task == "regression" else "accuracy"


def score(task: str, outputs: np.ndarray, y: np.ndarray) -> float:
    """Accuracy (argmax, or > 0.5 for binary) or mean squared error of outputs against labels y."""
    outputs = np.asarray(outputs, dtype=np.float64)
    if task == "regression":
        return float(np.mean((outputs.reshape(len(y)) - np.asarray(y, dtype=np.float64)) ** 2))
    binary = task == "binary"
    predicted = (outputs.reshape(len(y)) > 0.5).astype(np.int64) if binary else outputs.argmax(axis=1)
    return float(np.mean(predicted == np.asarray(y)))


def gate(task: str, reference: float, candidate: float, max_drop: float) -> str | None:
    """Return why a variant is refused, or None when it passes.

    Classification: refused when its accuracy is more than max_drop points (percent) below the reference.
    Regression: refused when its MSE is more than max_drop percent above the reference MSE.
    """
    if task == "regression":
        increase_pct = (candidate - reference) / max(reference, 1e-12) * 100.0
        if increase_pct > max_drop + _EPSILON_PERCENT:
            return (f"mse {candidate:.6g} is {increase_pct:.2f}% above the SavedModel's {reference:.6g} "
                    f"(threshold {max_drop}%)")
        return None
    drop_points = (reference - candidate) * 100.0
    if drop_points > max_drop + _EPSILON_POINTS:
        return (f"accuracy {candidate:.4f} is {drop_points:.2f} points below the SavedModel's {reference:.4f} "
                f"(threshold {max_drop})")
    return None
