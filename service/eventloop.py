"""Which asyncio event loop runs the server: uvloop when installed (the default), else asyncio's own.

uvloop implements the loop in C on libuv. Our event loop is the server's bottleneck (every call's
gRPC callbacks, decoding, batching hand-offs and metrics run on it), and on it the MNIST CNN
benchmark served 12-18% more requests per second per CPU second (docs/performance.md).
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Coroutine
from typing import Any, Literal

from service.settings import EventLoop


def resolve(choice: EventLoop) -> Literal["asyncio", "uvloop"]:
    """The loop `choice` means here: auto is uvloop if it is installed, else asyncio.

    Raises RuntimeError for "uvloop" when uvloop is not installed.
    """
    installed = importlib.util.find_spec("uvloop") is not None
    if choice == "uvloop" and not installed:
        raise RuntimeError("server.event_loop is 'uvloop' but uvloop is not installed; pip install uvloop")
    if choice == "auto":
        return "uvloop" if installed else "asyncio"
    return choice


def run(main: Coroutine[Any, Any, Any], choice: EventLoop) -> Any:
    """Run `main` to completion on a new event loop of the `choice` kind (see resolve); returns its result."""
    if resolve(choice) == "uvloop":
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)
