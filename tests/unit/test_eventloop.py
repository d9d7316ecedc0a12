"""service.eventloop: which loop `auto` picks, and that the chosen loop really runs the coroutine."""

from __future__ import annotations

import asyncio
import importlib.util

import pytest

from service import eventloop

HAVE_UVLOOP = importlib.util.find_spec("uvloop") is not None


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_asyncio_choice_runs_on_asyncios_own_loop():
    assert eventloop.run(_loop_module(), "asyncio").startswith("asyncio")


@pytest.mark.skipif(not HAVE_UVLOOP, reason="uvloop is not installed")
def test_auto_prefers_uvloop_when_installed():
    assert eventloop.resolve("auto") == "uvloop"
    assert eventloop.run(_loop_module(), "auto").startswith("uvloop")


def test_uvloop_choice_without_uvloop_says_how_to_get_it(monkeypatch):
    monkeypatch.setattr(eventloop.importlib.util, "find_spec", lambda name: None)
    assert eventloop.resolve("auto") == "asyncio"
    with pytest.raises(RuntimeError, match="uvloop is not installed"):
        eventloop.resolve("uvloop")
