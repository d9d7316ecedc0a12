"""Container health probe: exit 0 if our gRPC health service reports SERVING, else 1.

Used by the images' HEALTHCHECK (Docker, Compose, ECS), where Kubernetes' native gRPC probes are
not available:

    python -m service.healthcheck [--target 127.0.0.1:8500] [--service NAME] [--timeout-s 3]

`--service ""` (the default) asks for the server as a whole; a model name asks for that model.
Imports only grpcio and grpcio-health-checking, so it starts fast and works on TensorFlow-free images.
"""

from __future__ import annotations

import argparse
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

SERVING = health_pb2.HealthCheckResponse.ServingStatus.Name(health_pb2.HealthCheckResponse.SERVING)
EXIT_HEALTHY = 0
EXIT_UNHEALTHY = 1


def check_health(target: str, service: str = "", timeout_s: float = 3.0) -> str:
    """Ask `target`'s grpc.health.v1 service about `service`; return the status name, e.g. "SERVING".

    Raises grpc.RpcError when the call fails (server down, unknown service -> NOT_FOUND,
    no answer within timeout_s -> DEADLINE_EXCEEDED).
    """
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)
    return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)


def build_parser() -> argparse.ArgumentParser:
    """The probe's command-line parser (public so that image tests can check HEALTHCHECK's flags)."""
    parser = argparse.ArgumentParser(prog="python -m service.healthcheck", description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="127.0.0.1:8500", help="host:port of the gRPC server")
    parser.add_argument("--service", default="", help='health service name: "" for the server, or a model name')
    parser.add_argument("--timeout-s", type=float, default=3.0, help="deadline of the health call")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one health check; print the status and return the process exit code (0 healthy, 1 not)."""
    args = build_parser().parse_args(argv)
    label = args.service or "<server>"
    try:
        status = check_health(args.target, args.service, args.timeout_s)
    except grpc.RpcError as err:
        print(f"{label}: UNHEALTHY ({err.code().name}: {err.details()})", file=sys.stderr)
        return EXIT_UNHEALTHY
    print(f"{label}: {status}")
    return EXIT_HEALTHY if status == SERVING else EXIT_UNHEALTHY


if __name__ == "__main__":
    sys.exit(main())
