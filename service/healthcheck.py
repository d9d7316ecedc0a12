"""Container health probe: exit 0 if our gRPC health service reports SERVING, else 1.

Used by the images' HEALTHCHECK (Docker, Compose, ECS), where Kubernetes' native gRPC probes are
not available:

    python -m service.healthcheck [--target HOST:PORT] [--service NAME] [--timeout-s 3]

Without --target it asks 127.0.0.1 on the server's configured gRPC port: the same settings the
server reads (BATCHWISE_SERVER__PORT, the file named by BATCHWISE_CONFIG_FILE, else 8500), so a
container started with another port stays healthy. Port flags given to the server itself
(`--server.port`) are not visible to the probe: set the port through the environment or the file.
`--service ""` (the default) asks for the server as a whole; a model name asks for that model.
Imports grpcio, grpcio-health-checking and our settings, never TensorFlow.
"""

from __future__ import annotations

import argparse
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

SERVING = health_pb2.HealthCheckResponse.ServingStatus.Name(health_pb2.HealthCheckResponse.SERVING)
EXIT_HEALTHY = 0
EXIT_UNHEALTHY = 1
WILDCARD_HOSTS = ("", "0.0.0.0", "::", "[::]")


def check_health(target: str, service: str = "", timeout_s: float = 3.0) -> str:
    """Ask `target`'s grpc.health.v1 service about `service`; return the status name, e.g. "SERVING".

    Raises grpc.RpcError when the call fails (server down, unknown service -> NOT_FOUND,
    no answer within timeout_s -> DEADLINE_EXCEEDED).
    """
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)
    return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)


def configured_target() -> str:
    """host:port of the gRPC server as its settings say (environment and config file, no argv).

    A wildcard bind address (0.0.0.0, ::) becomes 127.0.0.1. Raises what load_settings raises
    (pydantic.ValidationError, FileNotFoundError) for bad settings.
    """
    from service.settings import load_settings  # only when needed: --target callers skip pydantic

    server = load_settings([]).server
    host = "127.0.0.1" if server.host in WILDCARD_HOSTS else server.host
    return f"[{host}]:{server.port}" if ":" in host else f"{host}:{server.port}"


def build_parser() -> argparse.ArgumentParser:
    """The probe's command-line parser (public so that image tests can check HEALTHCHECK's flags)."""
    parser = argparse.ArgumentParser(prog="python -m service.healthcheck", description=__doc__.splitlines()[0])
    parser.add_argument("--target", help="host:port of the gRPC server (default: 127.0.0.1, configured port)")
    parser.add_argument("--service", default="", help='health service name: "" for the server, or a model name')
    parser.add_argument("--timeout-s", type=float, default=3.0, help="deadline of the health call")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one health check; print the status and return the process exit code (0 healthy, 1 not)."""
    args = build_parser().parse_args(argv)
    label = args.service or "<server>"
    try:
        target = args.target or configured_target()
    except (ValueError, OSError) as exc:  # pydantic.ValidationError is a ValueError
        print(f"{label}: UNHEALTHY (cannot read the server settings: {exc})", file=sys.stderr)
        return EXIT_UNHEALTHY
    try:
        status = check_health(target, args.service, args.timeout_s)
    except grpc.RpcError as err:
        print(f"{label}: UNHEALTHY ({err.code().name}: {err.details()})", file=sys.stderr)
        return EXIT_UNHEALTHY
    print(f"{label}: {status}")
    return EXIT_HEALTHY if status == SERVING else EXIT_UNHEALTHY


if __name__ == "__main__":
    sys.exit(main())
