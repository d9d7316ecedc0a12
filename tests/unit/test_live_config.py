"""Live config: Settings.reload, the config-file watcher, restart-only changes, ReloadConfigRequest parsing."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest

from service.api import model_server_config_pb2
from service.errors import InvalidArgument
from service.repository.live_config import restart_only_changes
from service.rpc.model_config import models_from_proto
from service.settings import load_settings
from tests.unit.manager_fakes import WAIT_S, FakeFactory, make_manager, publish, settle


def _write(path, labels: str, timeout_ms: float = 1.0) -> None:
    path.write_text(f"[batching]\nbatch_timeout_ms = {timeout_ms}\n[models.m]\nversion_policy = 'all'\n{labels}\n")


def test_reload_rebuilds_settings_with_the_same_precedence(tmp_path, monkeypatch):
    config = tmp_path / "c.toml"
    config.write_text("[server]\nport = 1111\nhost = '0.0.0.0'\n[batching]\nmax_batch_size = 8\n")
    monkeypatch.setenv("BATCHWISE_BATCHING__NUM_BATCH_WORKERS", "3")
    settings = load_settings(["--config-file", str(config), "--server.port", "2222"], metrics={"port": 9})
    config.write_text("[server]\nport = 1111\nhost = '10.0.0.1'\n[batching]\nmax_batch_size = 16\n")
    fresh = settings.reload()
    assert fresh.server.port == 2222  # CLI still beats the file
    assert fresh.server.host == "10.0.0.1" and fresh.batching.max_batch_size == 16  # the file is re-read
    assert fresh.batching.num_batch_workers == 3 and fresh.metrics.port == 9  # env and overrides kept
    assert restart_only_changes(settings, fresh) == ["batching.max_batch_size", "server.host"]


def test_load_settings_from_two_threads_reads_each_ones_own_file(tmp_path):
    """Was: the config-file hint was a bare global, so a reload on the watcher's thread could read another file."""
    files = []
    for port in (1001, 1002):
        path = tmp_path / f"{port}.toml"
        path.write_text(f"[server]\nport = {port}\n")
        files.append((path, port))
    wrong = []

    def worker(path, port):
        for _ in range(40):
            if load_settings(["--config-file", str(path)]).server.port != port:
                wrong.append(port)

    threads = [threading.Thread(target=worker, args=item) for item in files]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_S * 4)
    assert wrong == []


def test_watcher_applies_labels_rejects_dangling_ones_and_retries_them(tmp_path, caplog):
    repo, config = tmp_path / "repo", tmp_path / "c.toml"
    publish(repo, "m", 1)
    _write(config, "version_labels = {stable = 1}")
    settings = load_settings(["--config-file", str(config)], repository={"path": repo, "poll_interval_s": 0})

    async def scenario():
        manager = make_manager(repo, FakeFactory(), settings)
        await manager.reconcile(wait=True)
        assert manager.resolve("m", label="stable").version == 1
        _write(config, "version_labels = {stable = 1, canary = 2}", timeout_ms=5)
        for _ in range(3):
            assert not await manager.config_watcher.poll()  # v2 is not AVAILABLE: rejected, old config kept
        assert "canary" not in manager.model_settings("m").version_labels
        publish(repo, "m", 2)
        await manager.reconcile(wait=True)
        await settle(manager, "m", {1: "AVAILABLE", 2: "AVAILABLE"})
        assert await manager.config_watcher.poll()  # same file, now valid: applied without another edit
        assert manager.resolve("m", label="canary").version == 2
        await manager.stop()

    with caplog.at_level(logging.INFO):
        asyncio.run(scenario())
    rejected = [r for r in caplog.records if "rejected, previous config kept" in r.getMessage()]
    assert len(rejected) == 1  # logged once, not once per poll
    assert "label 'canary' points at version 2 of model 'm', which is not available" in rejected[0].getMessage()
    assert any("batching.batch_timeout_ms apply only after a restart" in r.getMessage() for r in caplog.records)


def _config(**entries) -> model_server_config_pb2.ModelServerConfig:
    config = model_server_config_pb2.ModelServerConfig()
    for name, fields in entries.items():
        entry = config.model_config_list.config.add(name=name, base_path=fields.get("base_path", ""))
        policy = fields.get("policy")
        if policy == "all":
            entry.model_version_policy.all.SetInParent()
        elif isinstance(policy, list):
            entry.model_version_policy.specific.versions.extend(policy)
        elif isinstance(policy, int):
            entry.model_version_policy.latest.num_versions = policy
        entry.version_labels.update(fields.get("labels", {}))
    return config


def _inside(name: str, path: str) -> bool:
    return path == f"/repo/{name}"


def test_model_server_config_maps_to_policies_and_labels():
    models = models_from_proto(
        _config(a={"policy": "all", "labels": {"stable": 1}}, b={"policy": [1, 3]}, c={"policy": 2},
                d={"base_path": "/repo/d"}), _inside,
    )
    assert (models["a"].version_policy, models["a"].version_labels) == ("all", {"stable": 1})
    assert (models["b"].version_policy, models["b"].versions) == ("specific", [1, 3])
    assert (models["c"].version_policy, models["c"].num_versions) == ("latest", 2)
    assert (models["d"].version_policy, models["d"].num_versions) == ("latest", 1)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        pytest.param(model_server_config_pb2.ModelServerConfig(), "only model_config_list", id="no-list"),
        pytest.param(_config(**{"../etc": {}}), "not a valid model name", id="traversal-name"),
        pytest.param(_config(a={"base_path": "/etc"}), "base_path must be empty", id="outside"),
        pytest.param(_config(a={"base_path": "/repo/a/../../etc"}), "base_path must be empty", id="dotdot"),
        pytest.param(_config(a={"base_path": "/repo/b"}), "base_path must be empty", id="other-model"),
        pytest.param(_config(a={"policy": []}), "lists no versions", id="empty-specific"),
        pytest.param(_config(a={"labels": {"7": 1}}), "non-numeric", id="numeric-label"),
        pytest.param(_config(a={"labels": {"x": -1}}), "positive version", id="negative-version"),
    ],
)
def test_bad_model_server_config_is_invalid_argument(config, message):
    with pytest.raises(InvalidArgument, match=message):
        models_from_proto(config, _inside)
