"""grpc_server_options: the channel arguments our server (and the benchmark's framework ceiling) runs with."""

from __future__ import annotations

from service.rpc.options import grpc_server_options
from service.settings import ServerSettings


def test_pending_calls_are_bounded_with_early_drops_from_half_the_limit():
    options = dict(grpc_server_options(ServerSettings(max_pending_rpcs=300)))
    assert options["grpc.server.max_pending_requests"] == 150
    assert options["grpc.server.max_pending_requests_hard_limit"] == 300
    assert options["grpc.so_reuseport"] == 0


def test_connection_age_only_when_set():
    assert "grpc.max_connection_age_ms" not in dict(grpc_server_options(ServerSettings()))
    options = dict(grpc_server_options(ServerSettings(max_connection_age_s=30, grace_period_s=5)))
    assert options["grpc.max_connection_age_ms"] == 30_000
    assert options["grpc.max_connection_age_grace_ms"] == 5_000
