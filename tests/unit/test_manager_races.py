"""Named regression tests for the ModelManager races and gaps fixed in the lifecycle work.

Each test drives the real manager (real scan, warm-up, batchers) with a fake, holdable backend.
"""

from __future__ import annotations

import asyncio
import shutil

import numpy as np
import pytest

from service.errors import Unavailable
from service.settings import ModelSettings
from tests.unit.manager_fakes import WAIT_S, FakeFactory, make_manager, publish, settle, states

X = np.ones((1, 3), np.float32)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, WAIT_S * 2))


def test_scan_and_unload_are_not_queued_behind_a_long_load(tmp_path):
    """Was: scans and backend unloads ran on the one loader thread, so a slow load froze discovery."""
    factory = FakeFactory()
    publish(tmp_path, "a", 1)
    publish(tmp_path, "b", 1)

    async def scenario():
        manager = make_manager(tmp_path, factory, b={"version_policy": "all"})
        await manager.reconcile(wait=True)
        gate = factory.hold("b", 2)
        publish(tmp_path, "b", 2)
        await manager.reconcile()
        await settle(manager, "b", {1: "AVAILABLE", 2: "LOADING"})
        shutil.rmtree(tmp_path / "a")
        await manager.reconcile()  # must not wait for b/2's load
        await settle(manager, "a", {})
        assert factory.backends[0].unloaded
        gate.set()
        await settle(manager, "b", {1: "AVAILABLE", 2: "AVAILABLE"})
        await manager.stop()

    run(scenario())


def test_a_second_pass_in_the_same_loop_turn_does_not_load_twice(tmp_path):
    """Was: a version was tracked only once its load task ran, so a config applied right after a scan
    loaded it a second time."""
    factory = FakeFactory()
    publish(tmp_path, "m", 1)

    async def scenario():
        manager = make_manager(tmp_path, factory)
        await manager.reconcile()
        manager.apply_model_config({"m": ModelSettings(version_policy="all")})
        await settle(manager, "m", {1: "AVAILABLE"})
        await manager.stop()

    run(scenario())
    assert factory.calls[("m", 1, "savedmodel")] == 1


def test_a_failing_listener_does_not_break_a_load(tmp_path):
    """Was: an exception in a state listener (e.g. metrics) escaped into the load and left the version LOADING."""
    factory = FakeFactory()
    publish(tmp_path, "m", 1)

    def broken(servable):
        raise RuntimeError("listener bug")

    async def scenario():
        manager = make_manager(tmp_path, factory)
        manager.add_listener(broken)
        await manager.reconcile(wait=True)
        assert states(manager, "m") == {1: "AVAILABLE"}
        servable = manager.resolve("m")
        assert servable.load_s is not None and servable.warmup_s is not None
        np.testing.assert_array_equal((await servable.batchers["serving_default"].submit({"x": X}))["y"], X)
        await manager.stop()

    run(scenario())


def test_batcher_failure_ends_the_version_and_unloads_its_backend(tmp_path):
    """Was: an error after the backend loaded (building or starting batchers) left the version LOADING forever."""
    factory = FakeFactory()
    publish(tmp_path, "m", 1)

    async def scenario():
        manager = make_manager(tmp_path, factory)

        def failing(servable, spec):
            raise RuntimeError("no batcher for you")

        manager._batcher_factory = failing  # the one seam: the batcher factory is injected
        await manager.reconcile(wait=True)
        (servable,) = manager.versions_of("m")
        assert servable.state.name == "END" and "no batcher for you" in servable.error
        assert factory.backends[0].unloaded
        await manager.stop()

    run(scenario())


def test_variant_that_finishes_loading_after_its_version_unloaded_is_unloaded(tmp_path):
    """Was: unload() skipped alternates still loading, so they stayed loaded with running batchers."""
    factory = FakeFactory()
    publish(tmp_path, "m", 1, tflite=True)

    async def scenario():
        manager = make_manager(tmp_path, factory)
        await manager.reconcile(wait=True)
        base = manager.resolve("m")
        gate = factory.hold("m", 1)
        request = asyncio.ensure_future(manager.with_variant(base, "float32"))
        while not factory.calls[("m", 1, "float32")]:
            await asyncio.sleep(0.01)
        await manager.unload(base, reason="test")
        gate.set()
        with pytest.raises(Unavailable, match="unloading"):
            await request
        alternate = base.alternates["float32"].result()
        assert alternate.state.name == "END" and alternate.backend.unloaded
        await manager.stop()

    run(scenario())


def test_stop_finishes_a_drain_in_progress(tmp_path):
    """Was: stop() cancelled running unloads mid-drain and then skipped those versions, never unloading them."""
    factory = FakeFactory()
    publish(tmp_path, "m", 1)

    async def scenario():
        manager = make_manager(tmp_path, factory)
        await manager.reconcile(wait=True)
        servable = manager.resolve("m")
        servable.acquire()  # an in-flight request holds the version
        shutil.rmtree(tmp_path / "m")
        await manager.reconcile()
        await settle(manager, "m", {1: "UNLOADING"})
        stopping = asyncio.ensure_future(manager.stop())
        await asyncio.sleep(0.05)
        servable.release()  # the request finishes
        await stopping
        assert servable.state.name == "END" and factory.backends[0].unloaded

    run(scenario())


def test_repository_root_vanishing_keeps_serving(tmp_path):
    """Was: a missing root scanned as "no models", so an unmounted volume unloaded everything."""
    factory = FakeFactory()
    root = tmp_path / "repo"
    publish(root, "m", 1)

    async def scenario():
        manager = make_manager(root, factory)
        await manager.reconcile(wait=True)
        root.rename(tmp_path / "elsewhere")
        await manager.reconcile()
        assert states(manager, "m") == {1: "AVAILABLE"}
        (tmp_path / "elsewhere").rename(root)
        await manager.reconcile()
        assert states(manager, "m") == {1: "AVAILABLE"}
        await manager.stop()

    run(scenario())


def test_version_symlinked_outside_the_root_is_skipped_not_fatal(tmp_path):
    """Was: one version resolving outside the root made the whole scan fail, so nothing else was discovered."""
    factory = FakeFactory()
    root = tmp_path / "repo"
    publish(root, "m", 1)
    outside = publish(tmp_path / "outside", "m", 7)
    (root / "m" / "7").symlink_to(outside, target_is_directory=True)
    publish(root, "n", 1)

    async def scenario():
        manager = make_manager(root, factory)
        await manager.reconcile(wait=True)
        assert states(manager, "m") == {1: "AVAILABLE"}
        assert states(manager, "n") == {1: "AVAILABLE"}
        await manager.stop()

    run(scenario())
    assert ("m", 7, "savedmodel") not in factory.calls


def test_version_deleted_while_loading_does_not_replace_the_serving_one(tmp_path):
    """Was: after a load, versions were reconciled against what was tracked, not what was on disk,
    so a version deleted mid-load unloaded its predecessor and the model went dark."""
    factory = FakeFactory()
    publish(tmp_path, "m", 1)

    async def scenario():
        manager = make_manager(tmp_path, factory)
        await manager.reconcile(wait=True)
        gate = factory.hold("m", 2)
        publish(tmp_path, "m", 2)
        await manager.reconcile()
        await settle(manager, "m", {1: "AVAILABLE", 2: "LOADING"})
        shutil.rmtree(tmp_path / "m" / "2")
        await manager.reconcile()
        gate.set()
        await settle(manager, "m", {1: "AVAILABLE"})
        await manager.stop()

    run(scenario())


def test_labelled_version_is_kept_by_the_latest_policy(tmp_path):
    """Was: a label's version could be unloaded by the policy, leaving the label pointing at nothing."""
    factory = FakeFactory()
    publish(tmp_path, "m", 1)

    async def scenario():
        manager = make_manager(tmp_path, factory, m={"version_labels": {"stable": 1}})
        await manager.reconcile(wait=True)
        publish(tmp_path, "m", 2)
        await manager.reconcile(wait=True)
        await settle(manager, "m", {1: "AVAILABLE", 2: "AVAILABLE"})
        assert manager.resolve("m", label="stable").version == 1
        assert manager.resolve("m").version == 2
        manager.apply_model_config({"m": ModelSettings()})  # label dropped: v1 is no longer wanted
        await settle(manager, "m", {2: "AVAILABLE"})
        await manager.stop()

    run(scenario())


def test_corrupt_latest_at_startup_falls_back_to_the_previous_version(tmp_path):
    """Was: with latest-1 and a corrupt newest version, a restart served nothing for the model."""
    factory = FakeFactory()
    publish(tmp_path, "m", 1)
    publish(tmp_path, "m", 2, corrupt=True)

    async def scenario():
        manager = make_manager(tmp_path, factory)
        await manager.reconcile(wait=True)
        assert states(manager, "m") == {1: "AVAILABLE", 2: "END"}
        assert "corrupt" in manager.versions_of("m")[1].error
        publish(tmp_path, "m", 3)  # a good version replaces v1; v2's failure stays visible while it is on disk
        await manager.reconcile(wait=True)
        await settle(manager, "m", {2: "END", 3: "AVAILABLE"})
        await manager.stop()

    run(scenario())


def test_failed_version_is_retried_only_when_its_files_change(tmp_path):
    factory = FakeFactory()
    publish(tmp_path, "m", 1)
    bad = publish(tmp_path, "m", 2, corrupt=True)

    async def scenario():
        manager = make_manager(tmp_path, factory, m={"version_policy": "all"})
        await manager.reconcile(wait=True)
        for _ in range(3):
            await manager.reconcile(wait=True)
        assert factory.calls[("m", 2, "savedmodel")] == 1
        (bad / "saved_model.pb").write_bytes(b"fixed")
        await manager.reconcile(wait=True)
        assert states(manager, "m") == {1: "AVAILABLE", 2: "AVAILABLE"}
        await manager.stop()

    run(scenario())
    assert factory.calls[("m", 2, "savedmodel")] == 2


def test_older_failed_versions_are_not_reloaded_on_every_poll(tmp_path):
    """Was (during this work): a failed version dropped from tracking looked new again, so the
    fallback reloaded it on every poll. Failures are now remembered per fingerprint and shown."""
    factory = FakeFactory()
    publish(tmp_path, "m", 1)

    async def scenario():
        manager = make_manager(tmp_path, factory)
        await manager.reconcile(wait=True)
        publish(tmp_path, "m", 2, corrupt=True)
        await manager.reconcile(wait=True)
        publish(tmp_path, "m", 3, corrupt=True)
        for _ in range(4):
            await manager.reconcile(wait=True)
        assert states(manager, "m") == {1: "AVAILABLE", 2: "END", 3: "END"}
        assert all("corrupt" in s.error for s in manager.versions_of("m")[1:])
        await manager.stop()

    run(scenario())
    assert factory.calls[("m", 2, "savedmodel")] == 1 and factory.calls[("m", 3, "savedmodel")] == 1
