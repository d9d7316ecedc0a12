"""The readiness board across processes, and the supervisor's small helpers."""

from __future__ import annotations

import multiprocessing
import signal
import socket

import pytest

from service.workers.readiness import ReadinessBoard, WorkerRole
from service.workers.supervisor import describe_exit, reserve_port


def _mark_ready(role: WorkerRole) -> None:
    role.report(True)


def test_the_server_is_ready_only_when_every_worker_is():
    context = multiprocessing.get_context("spawn")
    board = ReadinessBoard.create(context, 2)
    first, second = WorkerRole(0, 2, board), WorkerRole(1, 2, board)
    assert first.report(True) is False  # worker 1 has not reported
    child = context.Process(target=_mark_ready, args=(second,))  # written from another process
    child.start()
    child.join(60)
    assert board.is_ready(1) and board.ready_count() == 2
    assert first.report(True) is True
    assert first.report(False) is False  # draining: not ready, whatever the others say
    assert board.ready_count() == 1


def test_reserving_a_port_held_without_reuseport_fails_with_the_address():
    with socket.socket() as plain:
        plain.bind(("127.0.0.1", 0))
        plain.listen()
        port = plain.getsockname()[1]
        with pytest.raises(OSError, match=f"cannot bind 127.0.0.1:{port} for the workers"):
            reserve_port("127.0.0.1", port)


def test_port_zero_is_reserved_for_all_workers():
    held = reserve_port("127.0.0.1", 0)
    try:
        port = held.getsockname()[1]
        with socket.socket() as worker:  # a worker binds the same port with SO_REUSEPORT
            worker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            worker.bind(("127.0.0.1", port))
            worker.listen()
    finally:
        held.close()


def test_exit_descriptions():
    assert describe_exit(3) == "exited with 3"
    assert describe_exit(-signal.SIGKILL) == "was killed by SIGKILL"
