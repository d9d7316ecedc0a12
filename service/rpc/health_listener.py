"""A plaintext, health-only gRPC listener for Kubernetes' native gRPC probes when the API port uses TLS.

Kubelet's gRPC probes speak plaintext and present no client certificate, so with TLS (or mTLS)
on the API port they fail the handshake and every pod looks dead. This second grpc.aio server
serves grpc.health.v1 and nothing else, from the same HealthServicer as the API port, so a
probe sees exactly what a TLS client would: SERVING once models are loaded, NOT_SERVING while
draining. No model, metadata or reflection method is reachable on it, so it leaks nothing but
readiness; bind it where only the kubelet (or a load balancer's health checker) can reach it.
"""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2_grpc

from service.rpc.health import HealthServicer

MAX_HEALTH_MESSAGE_BYTES = 4096  # a HealthCheckRequest is a service name; nothing bigger is needed
MAX_CONCURRENT_HEALTH_RPCS = 64  # probes and health checkers only; Watch streams count too


def build_health_server(
    health: HealthServicer, host: str, port: int, reuse_port: bool = False
) -> tuple[grpc.aio.Server, int]:
    """An unstarted grpc.aio server serving only `health` in plaintext on host:port, and its bound port.

    Port 0 binds a free port. `reuse_port` (worker processes) shares the port with SO_REUSEPORT.
    Raises RuntimeError when the address cannot be bound.
    NOTE: build and start it on the event loop that runs `health`.
    """
    options = [
        ("grpc.max_receive_message_length", MAX_HEALTH_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_HEALTH_MESSAGE_BYTES),
        ("grpc.so_reuseport", 1 if reuse_port else 0),
    ]
    server = grpc.aio.server(options=options, maximum_concurrent_rpcs=MAX_CONCURRENT_HEALTH_RPCS)
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    bound = server.add_insecure_port(f"{host}:{port}")
    return server, bound
