"""Hot reload through real gRPC under real concurrency: discovery, load-then-swap, failures, drain, deletion."""

from __future__ import annotations

import json
import shutil
import threading

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from contract.layout import CARD_FILE, variant_path
from service.api import prediction_service_pb2_grpc
from tests.support.lifecycle import (
    SteadyLoad,
    model_status,
    monotonic_switch,
    outputs_of,
    polling_settings,
    predict_request,
    publish,
    wait_until,
)
from tests.support.litert_models import build_litert_models

X = np.array([[1.0, 2.0, 3.0]], dtype=np.float32)


def _affine_check(scales: dict[int, float]):
    def check(version: int, outputs: dict) -> None:
        np.testing.assert_allclose(outputs["y"], X * scales[version] + 1, rtol=1e-6)

    return check


def _status_or_none(channel, model):
    try:
        return model_status(channel, model)
    except grpc.RpcError:
        return None


def test_only_renamed_versions_are_read(tmp_path, sources, start_server):
    publish(sources["affine2"], tmp_path, "m", 1)
    server = start_server(polling_settings(tmp_path))
    half = tmp_path / "m" / ".tmp-2-abcdef"  # the trainer is still writing version 2: never renamed
    shutil.copytree(sources["affine3"], half)
    (half / "saved_model.pb").write_bytes(b"half written")
    (tmp_path / "m" / "3").mkdir()  # an integer folder with no artifact in it yet
    shutil.copytree(sources["affine3"], tmp_path / "m" / "04")  # not a canonical version number
    publish(sources["affine2"], tmp_path, "sentinel", 1)  # once it is served, scans have seen all of the above
    with grpc.insecure_channel(server.target) as channel:
        wait_until(lambda: _status_or_none(channel, "sentinel") == {1: ("AVAILABLE", "")}, "the sentinel model")
        assert model_status(channel, "m") == {1: ("AVAILABLE", "")}
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        assert stub.Predict(predict_request("m", {"x": X}), timeout=30).model_spec.version.value == 1


class _HealthWatch:
    """Polls Health.Check for one service in a thread; records every answer that is not SERVING."""

    def __init__(self, target: str, service: str) -> None:
        self.bad: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(target, service), daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)

    def _run(self, target: str, service: str) -> None:
        with grpc.insecure_channel(target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while not self._stop.wait(0.02):
                status = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status
                if status != health_pb2.HealthCheckResponse.SERVING:
                    self.bad.append(health_pb2.HealthCheckResponse.ServingStatus.Name(status))


def _more_responses(load: SteadyLoad, count: int) -> None:
    marks = [len(v) for v in load.versions]
    wait_until(lambda: all(len(v) >= m + count for v, m in zip(load.versions, marks, strict=True)), "more responses")


@pytest.mark.slow
def test_publishing_under_load_switches_with_zero_failed_requests(tmp_path, sources, start_server):
    publish(sources["affine2"], tmp_path, "m", 1)
    server = start_server(polling_settings(tmp_path))
    request = predict_request("m", {"x": X})
    check = _affine_check({1: 2, 2: 3})
    with _HealthWatch(server.target, "m") as health, SteadyLoad(server.target, request, check) as load:
        _more_responses(load, 10)
        publish(sources["affine3"], tmp_path, "m", 2)
        wait_until(lambda: load.all_on(2), "every client answered by version 2")
        _more_responses(load, 20)
    assert load.failures == []
    assert health.bad == []
    for sequence in load.versions:
        assert sequence[0] == 1 and sequence[-1] == 2
        assert monotonic_switch(sequence, 1, 2), sequence
    with grpc.insecure_channel(server.target) as channel:
        wait_until(lambda: model_status(channel, "m") == {2: ("AVAILABLE", "")}, "version 1 unloaded")


def _garbage_saved_model(folder):
    (folder / "saved_model.pb").write_bytes(b"this is not a protobuf")


def _missing_variables(folder):
    shutil.rmtree(folder / "variables")


def _only_tflite(folder, data: bytes, card: dict | None = None):
    (folder / "saved_model.pb").unlink()
    shutil.rmtree(folder / "variables")
    variant_path(folder, "float32").parent.mkdir()
    variant_path(folder, "float32").write_bytes(data)
    (folder / CARD_FILE).write_text(json.dumps(card)) if card else (folder / CARD_FILE).unlink()


@pytest.mark.slow
def test_corrupt_versions_under_load_fail_nothing_and_are_retried_when_fixed(tmp_path, sources, start_server):
    litert = build_litert_models()
    publish(sources["mlp"], tmp_path, "k", 1)
    card = json.loads((sources["mlp"] / CARD_FILE).read_text())
    sample = np.asarray(card["samples"]["inputs"]["features"], np.float32)
    expected = np.asarray(card["samples"]["outputs"]["probabilities"], np.float32)

    def check(version, outputs):
        assert version in (1, 5)  # v5 is the same network once fixed
        np.testing.assert_allclose(outputs["probabilities"], expected, atol=1e-5)

    server = start_server(polling_settings(tmp_path))
    bad = {
        2: (_garbage_saved_model, "cannot load SavedModel"),
        3: (_missing_variables, "cannot load SavedModel"),
        4: (lambda d: _only_tflite(d, b"garbage flatbuffer"), "float32:"),
        5: (lambda d: _only_tflite(d, litert.randomized.read_bytes(), litert.iris.card()), "consistency guard"),
    }
    with SteadyLoad(server.target, predict_request("k", {"features": sample}), check) as load, grpc.insecure_channel(
        server.target
    ) as channel:
        for version, (edit, _) in bad.items():
            publish(sources["mlp"], tmp_path, "k", version, edit)
        ended = lambda: {v: s for v, s in model_status(channel, "k").items() if s[0] == "END"}  # noqa: E731
        wait_until(lambda: set(ended()) == set(bad), "every corrupt version reported")
        _more_responses(load, 10)
        status = model_status(channel, "k")
        assert status[1] == ("AVAILABLE", "")
        for version, (_, message) in bad.items():
            assert message in status[version][1], status[version]
        # Fix version 5 in place: its files change, so it is retried (the guard still refuses the
        # TFLite file; the SavedModel now present is served instead).
        shutil.copytree(sources["mlp"] / "variables", tmp_path / "k" / "5" / "variables")
        shutil.copy(sources["mlp"] / "saved_model.pb", tmp_path / "k" / "5" / "saved_model.pb")
        wait_until(lambda: load.all_on(5), "every client answered by the fixed version 5")
        _more_responses(load, 10)
    assert load.failures == []
    for sequence in load.versions:
        assert monotonic_switch(sequence, 1, 5), sequence


def _queued_rows(server, model: str, version: int) -> int:
    async def read():
        servable = server.server.manager.resolve(model, version)
        return servable.batchers["serving_default"].queue_rows

    return server.call(read())


def test_deleting_a_version_drains_its_queued_requests(tmp_path, sources, start_server):
    publish(sources["affine2"], tmp_path, "m", 1)
    publish(sources["affine3"], tmp_path, "m", 2)
    settings = polling_settings(
        tmp_path,
        batching={"batch_timeout_ms": 120_000, "batch_idle_timeout_ms": 0, "max_batch_size": 64},  # wait in queue
        models={"m": {"version_policy": "all"}},
    )
    server = start_server(settings)
    with grpc.insecure_channel(server.target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        calls = [stub.Predict.future(predict_request("m", {"x": X}, version=1), timeout=60) for _ in range(5)]
        wait_until(lambda: _queued_rows(server, "m", 1) == 5, "5 requests queued on version 1")
        shutil.rmtree(tmp_path / "m" / "1")
        responses = [call.result() for call in calls]  # they complete long before the batch timeout
        assert [r.model_spec.version.value for r in responses] == [1] * 5
        for response in responses:
            np.testing.assert_allclose(outputs_of(response)["y"], X * 2 + 1)
        wait_until(lambda: model_status(channel, "m") == {2: ("AVAILABLE", "")}, "version 1 unloaded")
        with pytest.raises(grpc.RpcError) as info:
            stub.Predict(predict_request("m", {"x": X}, version=1), timeout=30)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
