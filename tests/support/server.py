"""Run a real BatchwiseServer in-process on a loopback port, on its own event-loop thread."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from service.app import BatchwiseServer
from service.settings import Settings


class ServerThread:
    """Starts the server on port 0 in a background thread; `stop()` drains it.

    `server_kwargs` go to BatchwiseServer (e.g. registry=CollectorRegistry()).

    NOTE: the server's event loop lives in the thread; use `call()` to run a coroutine on it.
    """

    def __init__(self, settings: Settings, **server_kwargs: Any) -> None:
        self.server = BatchwiseServer(settings, **server_kwargs)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="server-loop")
        self.port: int | None = None

    def start(self) -> ServerThread:
        self._thread.start()
        self.port = self.call(self.server.start(), timeout_s=120)
        return self

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def http_url(self) -> str:
        """The HTTP port's base URL (plaintext), e.g. http://127.0.0.1:PORT."""
        return f"http://127.0.0.1:{self.server.http_port}"

    def call(self, coro, timeout_s: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def stop(self, grace_s: float = 5.0) -> None:
        self.call(self.server.stop(grace_s))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


def server_settings(repo, **sections: dict) -> Settings:
    """Settings for a loopback test server on a free port with polling off, plus overrides."""
    base: dict[str, dict] = {
        "server": {"host": "127.0.0.1", "port": 0, "grace_period_s": 5},
        "repository": {"path": repo, "poll_interval_s": 0},
        "metrics": {"enabled": False},
        "http": {"host": "127.0.0.1", "port": 0},
    }
    for key, value in sections.items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    return Settings(**base)


def wait_for(condition, timeout_s: float = 30) -> None:
    """Poll `condition` every 10 ms until it is true; fail the test after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.01)
