"""server.workers: parsing, 'auto' from CPU affinity and the cgroup quota, and what it switches on."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from service.rpc.options import grpc_server_options
from service.settings import WORKER_CONNECTION_AGE_S, ServerSettings, load_settings
from service.workers.cpus import available_cpus, cgroup_cpu_limit


def test_one_worker_keeps_the_port_exclusive_and_connections_unaged():
    server = ServerSettings()
    assert server.worker_count == 1 and not server.reuse_port
    options = dict(grpc_server_options(server))
    assert options["grpc.so_reuseport"] == 0
    assert "grpc.max_connection_age_ms" not in options


def test_several_workers_share_the_port_and_age_connections_by_default():
    options = dict(grpc_server_options(ServerSettings(workers=3, grace_period_s=4)))
    assert options["grpc.so_reuseport"] == 1
    assert options["grpc.max_connection_age_ms"] == WORKER_CONNECTION_AGE_S * 1000
    assert options["grpc.max_connection_age_grace_ms"] == 4000


def test_an_explicit_connection_age_wins_even_zero():
    assert "grpc.max_connection_age_ms" not in dict(
        grpc_server_options(ServerSettings(workers=2, max_connection_age_s=0))
    )
    assert ServerSettings(workers=1, max_connection_age_s=12).connection_age_s == 12


def test_workers_from_cli_and_environment(monkeypatch):
    assert load_settings(["--server.workers", "4"]).server.worker_count == 4
    monkeypatch.setenv("BATCHWISE_SERVER__WORKERS", "3")
    assert load_settings([]).server.worker_count == 3
    monkeypatch.setenv("BATCHWISE_SERVER__WORKERS", "auto")
    assert load_settings([]).server.worker_count == available_cpus()


@pytest.mark.parametrize("bad", [0, -2, "many"])
def test_bad_worker_counts_are_refused_with_the_field_named(bad):
    with pytest.raises(ValidationError, match="workers"):
        ServerSettings(workers=bad)


@pytest.mark.parametrize(
    ("text", "cores"), [("max 100000\n", None), ("150000 100000\n", 1.5), ("50000 100000", 0.5), ("junk", None)]
)
def test_cgroup_quota(tmp_path, text, cores):
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text(text)
    assert cgroup_cpu_limit(cpu_max) == cores


def test_auto_is_affinity_capped_by_the_quota_rounded_up(tmp_path):
    affinity = len(os.sched_getaffinity(0))
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("50000 100000\n")  # half a core still gets one worker
    assert available_cpus(cpu_max) == 1
    cpu_max.write_text(f"{affinity * 100000 + 1} 100000\n")  # above the affinity mask: the mask wins
    assert available_cpus(cpu_max) == affinity
    assert available_cpus(tmp_path / "missing") == affinity  # no cgroup v2 file: affinity only
