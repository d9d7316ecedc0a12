"""Dynamic batching through the real gRPC server with a real SavedModel under concurrent clients."""

from __future__ import annotations

import shutil
import threading

import numpy as np
from prometheus_client import CollectorRegistry

from service.client import BatchwiseClient
from tests.support.server import ServerThread, server_settings

CLIENTS = 16
CALLS_PER_CLIENT = 10


def test_concurrent_clients_get_their_own_rows_from_merged_batches(model_repo, tmp_path):
    shutil.copytree(model_repo / "affine" / "2", tmp_path / "affine" / "2")
    registry = CollectorRegistry()
    settings = server_settings(
        tmp_path,
        batching={"mode": "fixed", "batch_timeout_ms": 20, "max_batch_size": 32, "num_batch_workers": 1},
        metrics={"enabled": True, "port": 0},
    )
    thread = ServerThread(settings, registry=registry).start()
    mismatches: list[str] = []
    start = threading.Barrier(CLIENTS)

    def client(index: int) -> None:
        rng = np.random.default_rng(index)
        with BatchwiseClient(thread.target) as conn:
            start.wait()
            for call in range(CALLS_PER_CLIENT):
                rows = 1 + (index + call) % 3  # requests of 1-3 rows interleave in the same batches
                x = rng.normal(size=(rows, 3)).astype(np.float32)
                _version, outputs = conn.predict("affine", {"x": x})
                if not np.allclose(outputs["y"], x * 3 + 1, rtol=1e-6) or outputs["y"].shape != x.shape:
                    mismatches.append(f"client {index} call {call}")

    try:
        workers = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(120)
    finally:
        thread.stop()
    assert not mismatches
    labels = {"model": "affine", "version": "2", "variant": "savedmodel", "signature": "serving_default"}
    batches = registry.get_sample_value("batchwise_batch_size_rows_count", labels)
    rows = registry.get_sample_value("batchwise_batch_size_rows_sum", labels)
    sent_rows = sum(1 + (i + c) % 3 for i in range(CLIENTS) for c in range(CALLS_PER_CLIENT))
    assert rows == sent_rows  # warm-up runs before the batcher, so every counted row is a client row
    assert batches < CLIENTS * CALLS_PER_CLIENT  # requests were merged: fewer model calls than requests
