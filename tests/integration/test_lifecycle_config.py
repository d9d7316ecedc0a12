"""Version labels, config-file re-reading and HandleReloadConfigRequest through real gRPC."""

from __future__ import annotations

import logging

import grpc
import numpy as np
import pytest

from service.api import model_management_pb2, model_service_pb2_grpc, prediction_service_pb2_grpc
from service.settings import load_settings
from tests.support.lifecycle import POLL_S, model_status, predict_request, publish, wait_until

X = np.array([[1.0, 2.0, 3.0]], dtype=np.float32)


def _served_by(channel, **spec) -> int:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    return stub.Predict(predict_request("m", {"x": X}, **spec), timeout=30).model_spec.version.value


def _error(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


def _write_config(path, labels: str, timeout_ms: float = 1.0) -> None:
    path.write_text(
        f"[batching]\nbatch_timeout_ms = {timeout_ms}\n"
        f"[models.m]\nversion_policy = 'all'\nversion_labels = {{{labels}}}\n"
    )


def test_labels_route_and_the_config_file_is_re_read(tmp_path, sources, start_server, caplog):
    caplog.set_level(logging.INFO)
    repo, config = tmp_path / "repo", tmp_path / "batchwise.toml"
    publish(sources["affine2"], repo, "m", 1)
    publish(sources["affine3"], repo, "m", 2)
    _write_config(config, "stable = 1, canary = 2")
    settings = load_settings(
        ["--config-file", str(config)],
        server={"host": "127.0.0.1", "port": 0, "grace_period_s": 5},
        repository={"path": repo, "poll_interval_s": POLL_S},
        metrics={"enabled": False},
    )
    server = start_server(settings)
    with grpc.insecure_channel(server.target) as channel:
        routed = (_served_by(channel, label="stable"), _served_by(channel, label="canary"), _served_by(channel))
        assert routed == (1, 2, 2)
        assert _error(lambda: _served_by(channel, label="gold")).code() == grpc.StatusCode.INVALID_ARGUMENT

        _write_config(config, "stable = 2, canary = 2", timeout_ms=3.0)  # promote; plus a restart-only change
        wait_until(lambda: _served_by(channel, label="stable") == 2, "stable promoted to version 2")
        assert any("batching.batch_timeout_ms apply only after a restart" in r.getMessage() for r in caplog.records)

        _write_config(config, "stable = 1, canary = 9")  # version 9 does not exist: the whole file is refused
        wait_until(lambda: any("rejected, previous config kept" in r.getMessage() for r in caplog.records), "rejection")
        assert (_served_by(channel, label="stable"), _served_by(channel, label="canary")) == (2, 2)
    rejection = next(r for r in caplog.records if "rejected, previous config kept" in r.getMessage())
    assert rejection.levelno == logging.ERROR
    assert "label 'canary' points at version 9 of model 'm', which is not available" in rejection.getMessage()


def _reload(channel, **models) -> model_management_pb2.ReloadConfigResponse:
    request = model_management_pb2.ReloadConfigRequest()
    for name, fields in models.items():
        entry = request.config.model_config_list.config.add(name=name, base_path=fields.get("base_path", ""))
        if "specific" in fields:
            entry.model_version_policy.specific.versions.extend(fields["specific"])
        else:
            entry.model_version_policy.all.SetInParent()
        entry.version_labels.update(fields.get("labels", {}))
    return model_service_pb2_grpc.ModelServiceStub(channel).HandleReloadConfigRequest(request, timeout=30)


def test_reload_config_request_applies_policies_and_labels_and_refuses_bad_ones(tmp_path, sources, start_server):
    publish(sources["affine2"], tmp_path, "m", 1)
    publish(sources["affine3"], tmp_path, "m", 2)
    settings = load_settings(
        [], server={"host": "127.0.0.1", "port": 0, "enable_model_control": True},
        repository={"path": tmp_path, "poll_interval_s": POLL_S}, metrics={"enabled": False},
        models={"m": {"version_policy": "all"}},
    )
    server = start_server(settings)
    with grpc.insecure_channel(server.target) as channel:
        response = _reload(channel, m={"specific": [1], "labels": {"stable": 1}, "base_path": str(tmp_path / "m")})
        assert response.status.error_code == 0
        wait_until(lambda: model_status(channel, "m") == {1: ("AVAILABLE", "")}, "version 2 unloaded by policy")
        assert (_served_by(channel), _served_by(channel, label="stable")) == (1, 1)

        refused = {
            "unknown model": (lambda: _reload(channel, nope={}), grpc.StatusCode.INVALID_ARGUMENT, "no model 'nope'"),
            "label to an unloaded version": (
                lambda: _reload(channel, m={"labels": {"canary": 2}}), grpc.StatusCode.FAILED_PRECONDITION,
                "label 'canary' points at version 2",
            ),
            "base_path outside": (
                lambda: _reload(channel, m={"base_path": "/etc"}), grpc.StatusCode.INVALID_ARGUMENT, "base_path",
            ),
            "base_path escaping": (
                lambda: _reload(channel, m={"base_path": f"{tmp_path}/m/../../etc"}),
                grpc.StatusCode.INVALID_ARGUMENT, "base_path",
            ),
        }
        for what, (call, code, message) in refused.items():
            error = _error(call)
            assert (error.code(), message in error.details()) == (code, True), what
        assert model_status(channel, "m") == {1: ("AVAILABLE", "")}  # nothing changed
        assert _served_by(channel, label="stable") == 1

        _reload(channel, m={})  # all versions, no labels
        wait_until(lambda: _served_by(channel) == 2, "version 2 loaded back")
        assert _error(lambda: _served_by(channel, label="stable")).code() == grpc.StatusCode.INVALID_ARGUMENT


def test_reload_config_request_is_unimplemented_unless_enabled(channel):
    error = _error(lambda: _reload(channel, affine={}))
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "--server.enable-model-control" in error.details()
