"""The gRPC server's channel options, shared by the server and the benchmark's framework-ceiling server."""

from __future__ import annotations

from service.settings import ServerSettings


def grpc_server_options(cfg: ServerSettings) -> list[tuple[str, int | str]]:
    """Channel arguments for grpc.aio.server(options=...): message limits, port sharing (only with workers),
    the pending-call bound, connection age."""
    options: list[tuple[str, int | str]] = [
        ("grpc.max_receive_message_length", cfg.max_message_bytes),
        ("grpc.max_send_message_length", cfg.max_message_bytes),
        ("grpc.so_reuseport", 1 if cfg.reuse_port else 0),  # only worker processes share a port
        # gRPC core sheds calls that pile up before the event loop accepts them, in C, without
        # ever running Python for them: random early drops past the soft limit, all past the hard one.
        ("grpc.server.max_pending_requests", cfg.max_pending_rpcs // 2),
        ("grpc.server.max_pending_requests_hard_limit", cfg.max_pending_rpcs),
    ]
    if cfg.connection_age_s > 0:
        options.append(("grpc.max_connection_age_ms", int(cfg.connection_age_s * 1000)))
        options.append(("grpc.max_connection_age_grace_ms", int(cfg.grace_period_s * 1000)))
    return options
