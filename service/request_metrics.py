"""Counts and times the inference calls of one door (protocol), whatever its transport.

Every door (TF Serving gRPC, v2 gRPC, the REST doors) records its calls the same way: `started()`
when a call arrives, then exactly one of `ok()` or `failed()`. Labels never carry the client's raw
model string: an unserved model is labelled "" (so a scan of random names cannot blow up the series).
"""

from __future__ import annotations

import time

from service.dataplane import DataPlane, ModelRef
from service.metrics import Metrics
from service.repository.servable import ServableVersion


class RequestRecorder:
    """The inference-call metrics of door `protocol` (one of service.metrics.PROTOCOLS); a no-op without metrics.

    NOTE: call on the event loop thread (Metrics is not thread-safe).
    """

    def __init__(self, metrics: Metrics | None, dataplane: DataPlane, protocol: str) -> None:
        self._metrics = metrics
        self._dataplane = dataplane
        self._protocol = protocol

    def started(self) -> float:
        """Count a call in (batchwise_inflight_requests); returns its start time for ok()/failed()."""
        if self._metrics is not None:
            self._metrics.request_started()
        return time.perf_counter()

    def ok(self, servable: ServableVersion, signature: str, started_s: float) -> None:
        """The call answered OK; `signature` is the one that ran (PredictResult.signature)."""
        if self._metrics is not None:
            labels = (servable.model, str(servable.version), servable.variant, signature)
            self._metrics.observe_request_ok(self._protocol, labels, time.perf_counter() - started_s)

    def failed(self, ref: ModelRef | None, servable: ServableVersion | None, code: str, started_s: float) -> None:
        """The call ended with `code` (a canonical code name, e.g. "NOT_FOUND"), after resolving `servable` if any."""
        if self._metrics is None:
            return
        if servable is not None:
            model, version, variant = servable.model, str(servable.version), servable.variant
        else:
            known = ref is not None and self._dataplane.is_served(ref.name)
            model, version, variant = (ref.name if known else ""), "", ""
        self._metrics.observe_request(
            self._protocol, (model, version, variant, ""), code, time.perf_counter() - started_s
        )
