"""The HTTP server's metrics adapter: finished requests -> service.metrics.Metrics, labelled by protocol."""

from __future__ import annotations

from collections.abc import Callable

from service.http.routes import Reply, Route
from service.metrics import Metrics


class HttpMetrics:
    """Records every HTTP exchange (observe_http, by route template and status) and, for predict and infer
    routes, the inference call (request_started / observe_request, as the gRPC doors do).

    `is_served(model)` says whether a client-sent model name may be used as a label (else "").
    """

    def __init__(self, metrics: Metrics, is_served: Callable[[str], bool]) -> None:
        self._metrics = metrics
        self._is_served = is_served

    def request_started(self, protocol: str, predict: bool) -> None:
        if predict:
            self._metrics.request_started()

    def request_finished(self, protocol: str, route: Route, reply: Reply, *, code: str, duration_s: float) -> None:
        """`reply.labels`: (model, version, variant, signature) of the version that served it, or for a
        refused request (model as the client sent it, "", "", "")."""
        self._metrics.observe_http(protocol, route.template, reply.status, duration_s)
        if not route.predict:
            return
        labels = reply.labels or ("", "", "", "")
        if not labels[1] and labels[0] and not self._is_served(labels[0]):
            labels = ("", "", "", "")
        self._metrics.observe_request(protocol, labels, code, duration_s)

    def answered(self, protocol: str, route: str, status: int) -> None:
        """An exchange outside the API call accounting: health, or refused before a door (drain, unknown
        path, wrong method). Counted, not timed."""
        self._metrics.observe_http(protocol, route, status, None)
