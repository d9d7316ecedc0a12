"""The MLServer peer's generated repository: batching and workers as asked, loopback only, our runtime copied in."""

from __future__ import annotations

import json

from loadtests.peer_mlserver import RUNTIME_CLASS, served_name, write_repository


def test_repository_carries_our_batching_and_worker_settings(tmp_path):
    saved_model = tmp_path / "repo" / "mnist" / "1"
    saved_model.mkdir(parents=True)
    workdir = tmp_path / "work"
    workdir.mkdir()
    write_repository(
        workdir, saved_model, "mnist", grpc_port=9001, http_port=9002, metrics_port=9003,
        max_batch_size=64, max_batch_time_s=0.001, parallel_workers=2,
    )
    server = json.loads((workdir / "settings.json").read_text())
    model = json.loads((workdir / "mnist" / "model-settings.json").read_text())
    assert server["host"] == "127.0.0.1"
    assert (server["grpc_port"], server["http_port"], server["metrics_port"]) == (9001, 9002, 9003)
    assert server["parallel_workers"] == 2
    assert server["debug"] is False
    assert (model["max_batch_size"], model["max_batch_time"]) == (64, 0.001)
    assert model["implementation"] == RUNTIME_CLASS
    assert model["parameters"]["uri"] == str(saved_model.resolve())
    assert "class TFSavedModelRuntime(MLModel)" in (workdir / "mnist" / "runtime.py").read_text()


def test_served_name_follows_the_repository_layout(tmp_path):
    assert served_name(tmp_path / "repo" / "mnist" / "3") == "mnist"
    assert served_name(tmp_path / "exported_cnn") == "exported_cnn"
