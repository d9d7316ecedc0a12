"""The HTTP server's metrics adapter: finished requests -> service.metrics.Metrics."""

from __future__ import annotations

from collections.abc import Callable

from service.metrics import Metrics


class HttpMetrics:
    """Records HTTP predict requests in the predict metrics, as the gRPC Predict servicer does.

    `is_served(model)` says whether a client-sent model name may be used as a label (else "").
    """

    def __init__(self, metrics: Metrics, is_served: Callable[[str], bool]) -> None:
        self._metrics = metrics
        self._is_served = is_served

    def request_started(self, protocol: str, predict: bool) -> None:
        if predict:
            self._metrics.predict_started()

    def request_finished(
        self, protocol: str, predict: bool, labels: tuple[str, str, str, str], code: str, duration_s: float
    ) -> None:
        if not predict:
            return
        if not labels[1] and labels[0] and not self._is_served(labels[0]):
            labels = ("", "", "", "")
        self._metrics.observe_predict(labels, code, duration_s)
