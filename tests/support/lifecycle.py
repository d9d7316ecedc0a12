"""Helpers for lifecycle tests: publish like the trainer, drive steady Predict load, read status."""

from __future__ import annotations

import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np

from service.api import get_model_status_pb2, model_service_pb2_grpc, predict_pb2, prediction_service_pb2_grpc
from service.rpc.codec import to_ndarray, to_tensor_proto
from tests.support.server import server_settings

POLL_S = 0.2
WAIT_S = 90.0  # bound for "eventually"; never an assertion on speed
STATE = get_model_status_pb2.ModelVersionStatus.State


def publish(source: Path, repo: Path, model: str, version: int, edit: Callable[[Path], None] | None = None) -> Path:
    """Copy `source` into `<repo>/<model>/.tmp-<version>-<random>/`, apply `edit`, then rename it into place.

    Files get fresh mtimes (copy, not copy2), as a newly trained version would.
    """
    tmp = repo / model / f".tmp-{version}-{uuid.uuid4().hex[:8]}"
    shutil.copytree(source, tmp, copy_function=shutil.copy)
    if edit is not None:
        edit(tmp)
    final = repo / model / str(version)
    os.rename(tmp, final)
    return final


def polling_settings(repo: Path, **sections):
    """server_settings with the repository polled every POLL_S seconds."""
    repository = {"poll_interval_s": POLL_S, **sections.pop("repository", {})}
    return server_settings(repo, repository=repository, **sections)


def wait_until(predicate: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    """Poll `predicate` until true; AssertionError naming `what` after timeout_s (a hang guard)."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def predict_request(model: str, inputs: dict[str, np.ndarray], version: int | None = None, label: str = ""):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    if version is not None:
        request.model_spec.version.value = version
    if label:
        request.model_spec.version_label = label
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(to_tensor_proto(value))
    return request


def outputs_of(response) -> dict[str, np.ndarray]:
    return {name: to_ndarray(t, name, max_elements=10**7) for name, t in response.outputs.items()}


def model_status(channel: grpc.Channel, model: str) -> dict[int, tuple[str, str]]:
    """version -> (TF Serving state name, error message) from GetModelStatus."""
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = model
    response = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(request, timeout=10)
    return {s.version: (STATE.Name(s.state), s.status.error_message) for s in response.model_version_status}


class SteadyLoad:
    """`clients` threads, each sending Predicts back to back (closed loop) until stop().

    Records, per client, the version of every response in order, and every failure.
    `check(version, outputs)` validates each response's values (raise to count a failure).
    """

    def __init__(self, target: str, request, check: Callable[[int, dict], None], clients: int = 4) -> None:
        self._target = target
        self._request = request
        self._check = check
        self.versions: list[list[int]] = [[] for _ in range(clients)]
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(clients)]

    def __enter__(self) -> SteadyLoad:
        for thread in self._threads:
            thread.start()
        wait_until(lambda: all(self.versions), "every client's first response")
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def all_on(self, version: int) -> bool:
        """True once every client's latest response came from `version`."""
        return all(v and v[-1] == version for v in self.versions)

    def _run(self, index: int) -> None:
        with grpc.insecure_channel(self._target) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            while not self._stop.is_set():
                try:
                    response = stub.Predict(self._request, timeout=30)
                    version = response.model_spec.version.value
                    self._check(version, outputs_of(response))
                    self.versions[index].append(version)
                except grpc.RpcError as exc:
                    self.failures.append(f"{exc.code().name}: {exc.details()}")
                except Exception as exc:
                    self.failures.append(repr(exc))


def monotonic_switch(sequence: list[int], old: int, new: int) -> bool:
    """True if `sequence` is some `old`s followed only by `new`s (never back)."""
    if set(sequence) - {old, new}:
        return False
    first_new = sequence.index(new) if new in sequence else len(sequence)
    return all(v == new for v in sequence[first_new:])
