"""The gRPC server's channel options, shared by the server and the benchmark's framework-ceiling server."""

from __future__ import annotations

from service.settings import ServerSettings


def grpc_server_options(cfg: ServerSettings) -> list[tuple[str, int | str]]:
    """Channel arguments for grpc.aio.server(options=...): message limits, no port sharing, connection age."""
    options: list[tuple[str, int | str]] = [
        ("grpc.max_receive_message_length", cfg.max_message_bytes),
        ("grpc.max_send_message_length", cfg.max_message_bytes),
        ("grpc.so_reuseport", 0),
    ]
    if cfg.max_connection_age_s > 0:
        options.append(("grpc.max_connection_age_ms", int(cfg.max_connection_age_s * 1000)))
        options.append(("grpc.max_connection_age_grace_ms", int(cfg.grace_period_s * 1000)))
    return options
