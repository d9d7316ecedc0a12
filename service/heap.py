"""Keep the garbage collector's full passes off the request path: freeze the long-lived heap after loads.

A process with TensorFlow and a loaded model holds ~400k Python objects. CPython's generation-2
collection walks all of them: on the benchmark model that stopped the event loop for ~230 ms,
once every few seconds under load, and set the p99. gc.freeze() moves every object alive now
into a permanent generation the collector ignores; young request garbage is still collected.
"""

from __future__ import annotations

import gc
import logging

log = logging.getLogger(__name__)


def settle_heap() -> None:
    """Collect everything once, then freeze what survives (models, TensorFlow, modules).

    Call it after the initial load and after a version is unloaded: unfreezing first lets the
    unloaded version's cyclic garbage be collected instead of staying frozen forever.
    NOTE: blocks the calling thread for one full collection (hundreds of ms with TensorFlow).
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    log.debug("heap settled: %d objects frozen", gc.get_freeze_count())
