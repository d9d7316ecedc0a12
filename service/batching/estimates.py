"""Online estimates a batch policy decides from: one worker's compute time by batch size, and the arrival rate."""

from __future__ import annotations

import math

# Each new batch weighs this much against everything seen before it (an effective memory of ~30 batches).
_COST_WEIGHT = 0.03
# An observation more than this many times the prediction (a GC pause, a noisy neighbour) counts as this.
_OUTLIER_FACTOR = 4.0


class CostModel:
    """Compute seconds of one worker's batch, modelled as a + s * rows and fitted online.

    The fit is an exponentially weighted least squares over (rows, seconds) of past batches, so it
    follows a change of device, variant or load within a few dozen batches. `predict_s` adds twice
    the weighted root-mean-square residual, so it is a pessimistic estimate (roughly a high
    percentile), not the mean. Until two different batch sizes have been seen, cost is assumed to
    grow in proportion to rows (pessimistic for every real model); before any batch, `ready` is False.
    NOTE: not thread-safe; the batcher uses it from its event loop only.
    """

    def __init__(self) -> None:
        self._w = self._wx = self._wxx = self._wy = self._wxy = 0.0
        self._sq_residual = 0.0
        self._a = self._s = 0.0
        self.batches = 0

    @property
    def ready(self) -> bool:
        """True once at least one batch has been observed."""
        return self.batches > 0

    def observe(self, rows: int, compute_s: float) -> None:
        """Add one batch of `rows` rows that took `compute_s` seconds (rows >= 1, compute_s >= 0)."""
        if self.ready:
            expected = self._a + self._s * rows
            compute_s = min(compute_s, _OUTLIER_FACTOR * expected) if expected > 0 else compute_s
            residual = compute_s - expected
            self._sq_residual += _COST_WEIGHT * (residual * residual - self._sq_residual)
        keep = 1.0 - _COST_WEIGHT if self.ready else 0.0
        self._w = keep * self._w + 1.0
        self._wx = keep * self._wx + rows
        self._wxx = keep * self._wxx + rows * rows
        self._wy = keep * self._wy + compute_s
        self._wxy = keep * self._wxy + rows * compute_s
        self.batches += 1
        self._refit()

    def predict_s(self, rows: int) -> float:
        """Pessimistic seconds for a batch of `rows` rows; 0.0 before the first observation."""
        return self.mean_s(rows) + 2.0 * math.sqrt(self._sq_residual)

    def mean_s(self, rows: int) -> float:
        """Expected (mean) seconds for a batch of `rows` rows; 0.0 before the first observation."""
        return self._a + self._s * rows

    def rows_to_sustain(self, rows_per_s: float) -> float:
        """The fewest rows per batch at which batches keep up with `rows_per_s` on average
        (rows / (a + s * rows) >= rows_per_s: the mean cost, since throughput is an average, not a
        tail); math.inf when no batch size does, 0.0 before the first observation."""
        if not self.ready or rows_per_s <= 0:
            return 0.0
        if self._s * rows_per_s >= 1:
            return math.inf
        return rows_per_s * self._a / (1 - self._s * rows_per_s)

    def _refit(self) -> None:
        mean_x, mean_y = self._wx / self._w, self._wy / self._w
        var_x = self._wxx / self._w - mean_x * mean_x
        if var_x <= 1e-9 * max(1.0, mean_x * mean_x):  # one size seen so far: proportional to rows
            self._a, self._s = 0.0, mean_y / mean_x
            return
        slope = (self._wxy / self._w - mean_x * mean_y) / var_x
        intercept = mean_y - slope * mean_x
        if slope < 0:  # noise; bigger batches do not get cheaper
            self._a, self._s = mean_y, 0.0
        elif intercept < 0:
            self._a, self._s = 0.0, mean_y / mean_x
        else:
            self._a, self._s = intercept, slope


class ArrivalRate:
    """Rows per second arriving lately: an exponentially decaying count with time constant `tau_s`.

    After a step in load the estimate covers ~63% of the change in tau_s and ~95% in 3 * tau_s.
    NOTE: not thread-safe; called from the event loop only. Times are time.monotonic() seconds.
    """

    def __init__(self, tau_s: float = 0.1) -> None:
        self._tau_s = tau_s
        self._count = 0.0
        self._at_s: float | None = None

    def add(self, now_s: float, rows: int) -> None:
        """Count `rows` rows arriving at `now_s`."""
        self._count = self._decayed(now_s) + rows
        self._at_s = now_s

    def per_s(self, now_s: float) -> float:
        """The estimated arrival rate at `now_s`, in rows per second."""
        return self._decayed(now_s) / self._tau_s

    def _decayed(self, now_s: float) -> float:
        if self._at_s is None:
            return 0.0
        return self._count * math.exp(-max(0.0, now_s - self._at_s) / self._tau_s)
