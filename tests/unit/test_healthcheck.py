"""The container health probe against a real grpc.aio server running the standard health servicer."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from service.healthcheck import EXIT_HEALTHY, EXIT_UNHEALTHY, check_health, main

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def _with_health_server(statuses: dict[str, int], probe_argv: list[str]) -> int:
    """Serve `statuses` on a loopback port, run the probe's main() in a thread against it, return its code."""
    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    for name, status in statuses.items():
        await servicer.set(name, status)
    await server.start()
    try:
        # NOTE: main() blocks (sync channel), so it runs in a thread while this loop serves it.
        return await asyncio.to_thread(main, ["--target", f"127.0.0.1:{port}", "--timeout-s", "10", *probe_argv])
    finally:
        await server.stop(None)


@pytest.mark.parametrize(
    ("statuses", "service", "expected"),
    [
        pytest.param({"": SERVING}, "", EXIT_HEALTHY, id="server-serving"),
        pytest.param({"": NOT_SERVING}, "", EXIT_UNHEALTHY, id="server-not-serving"),
        pytest.param({"": NOT_SERVING, "digits": SERVING}, "digits", EXIT_HEALTHY, id="model-serving"),
        pytest.param({"": SERVING, "digits": NOT_SERVING}, "digits", EXIT_UNHEALTHY, id="model-not-serving"),
        pytest.param({"": SERVING}, "no-such-model", EXIT_UNHEALTHY, id="unknown-service-is-not-found"),
    ],
)
def test_probe_exit_code_follows_health_status(statuses: dict[str, int], service: str, expected: int) -> None:
    assert asyncio.run(_with_health_server(statuses, ["--service", service])) == expected


def _closed_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_probe_reports_unhealthy_when_nothing_listens(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--target", f"127.0.0.1:{_closed_loopback_port()}", "--timeout-s", "2"])
    assert code == EXIT_UNHEALTHY
    assert "UNHEALTHY" in capsys.readouterr().err


def test_check_health_raises_rpc_error_on_unknown_service() -> None:
    async def scenario() -> grpc.StatusCode:
        server = grpc.aio.server()
        health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            await asyncio.to_thread(check_health, f"127.0.0.1:{port}", "missing", 10.0)
        except grpc.RpcError as err:
            return err.code()
        finally:
            await server.stop(None)
        raise AssertionError("expected an RpcError")

    assert asyncio.run(scenario()) == grpc.StatusCode.NOT_FOUND


def test_module_runs_as_a_script_like_the_docker_healthcheck() -> None:
    """`python -m service.healthcheck` is what HEALTHCHECK runs; it must exit 1, not crash, with no server."""
    target = f"127.0.0.1:{_closed_loopback_port()}"
    result = subprocess.run(
        [sys.executable, "-m", "service.healthcheck", "--target", target, "--timeout-s", "2"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == EXIT_UNHEALTHY, result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("host", ["0.0.0.0", "127.0.0.1"])
def test_probe_without_target_follows_the_configured_port(host: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: the images' HEALTHCHECK hard-coded 127.0.0.1:8500, so another port read UNHEALTHY."""

    async def scenario() -> int:
        server = grpc.aio.server()
        servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await servicer.set("", SERVING)
        await server.start()
        monkeypatch.setenv("BATCHWISE_SERVER__PORT", str(port))
        monkeypatch.setenv("BATCHWISE_SERVER__HOST", host)
        try:
            return await asyncio.to_thread(main, ["--timeout-s", "10"])
        finally:
            await server.stop(None)

    assert asyncio.run(scenario()) == EXIT_HEALTHY


def test_probe_reports_unhealthy_on_unreadable_settings(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BATCHWISE_SERVER__PORT", "not-a-port")
    assert main(["--timeout-s", "2"]) == EXIT_UNHEALTHY
    assert "cannot read the server settings" in capsys.readouterr().err
