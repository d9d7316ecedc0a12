"""Temporary version folders left by killed runs are reclaimed; those of live writers never are."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from models.stale import FOREIGN_STALE_AFTER_S, WRITER_FILE, reclaim_stale_tmp, writer_identity
from tests.trainer.conftest import ROOT


def tmp_folder(repository: Path, name: str, writer: dict | None, age_s: float = 0.0) -> Path:
    folder = repository / "m" / name
    (folder / "variables").mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(b"partial")
    if writer is not None:
        (folder / WRITER_FILE).write_text(json.dumps(writer))
    when = time.time() - age_s
    for path in (folder, folder / WRITER_FILE):
        if path.exists():
            os.utime(path, (when, when))
    return folder


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_dead_writer_on_this_host_is_reclaimed(tmp_path):
    dead = tmp_folder(tmp_path, ".tmp-1-aa", {**writer_identity(), "pid": dead_pid()}, age_s=5)
    lines = reclaim_stale_tmp(tmp_path, older_than_s=1)
    assert not dead.exists() and len(lines) == 1 and "writer gone" in lines[0]


def test_a_reused_pid_is_not_mistaken_for_the_writer(tmp_path):
    reused = tmp_folder(tmp_path, ".tmp-1-ab", {**writer_identity(), "start_ticks": "1"}, age_s=5)
    reclaim_stale_tmp(tmp_path, older_than_s=1)
    assert not reused.exists()


def test_live_young_and_foreign_writers_are_kept(tmp_path):
    live = tmp_folder(tmp_path, ".tmp-1-bb", writer_identity(), age_s=3600)
    young = tmp_folder(tmp_path, ".tmp-2-cc", {**writer_identity(), "pid": dead_pid()}, age_s=0)
    foreign = {**writer_identity(), "host": "another-pod", "pid": 1}
    foreign_recent = tmp_folder(tmp_path, ".tmp-3-dd", foreign, age_s=3600)
    version = tmp_path / "m" / "4"
    version.mkdir()
    assert reclaim_stale_tmp(tmp_path, older_than_s=60) == []
    assert live.exists() and young.exists() and foreign_recent.exists() and version.exists()


def test_foreign_or_unmarked_folders_are_reclaimed_only_when_very_old(tmp_path):
    old = FOREIGN_STALE_AFTER_S + 60
    foreign = tmp_folder(tmp_path, ".tmp-1-ee", {**writer_identity(), "host": "another-pod"}, age_s=old)
    unmarked = tmp_folder(tmp_path, ".tmp-2-ff", None, age_s=old)
    unmarked_recent = tmp_folder(tmp_path, ".tmp-3-aa", None, age_s=600)
    not_ours = tmp_folder(tmp_path, ".tmp-notes", None, age_s=old)
    assert len(reclaim_stale_tmp(tmp_path, older_than_s=60)) == 2
    assert not foreign.exists() and not unmarked.exists() and unmarked_recent.exists() and not_ours.exists()


@pytest.mark.slow
def test_a_publish_killed_with_sigkill_is_reclaimed_by_the_next_run(tmp_path):
    from models.cli import main as cli_main
    from tests.support.foreign_models import build_two_input

    two = build_two_input(tmp_path)
    repository = tmp_path / "repo"
    argv = ["publish", str(two.path), "--repository", str(repository), "--model-name", "two", "--quiet"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    child = subprocess.Popen(
        [sys.executable, "-m", "models", *argv, "--variants", "float32"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    marker = None
    deadline = time.monotonic() + 240
    while marker is None and child.poll() is None and time.monotonic() < deadline:
        marker = next(iter((repository / "two").glob(f".tmp-1-*/{WRITER_FILE}")), None)
        time.sleep(0.02)
    assert marker is not None, "the publish run never started writing"
    child.send_signal(signal.SIGKILL)
    assert child.wait(timeout=30) == -signal.SIGKILL
    left = marker.parent
    assert left.exists() and not (repository / "two" / "1").exists()  # the litter this test is about
    assert cli_main([*argv, "--variants", "float32", "--stale-tmp-after-s", "0"]) == 0
    assert not left.exists()
    assert sorted(p.name for p in (repository / "two").iterdir()) == ["1"]
    assert not (repository / "two" / "1" / WRITER_FILE).exists()


def test_train_reclaims_at_its_start(tmp_path, capsys):
    from models.cli import main as cli_main

    dead = tmp_folder(tmp_path, ".tmp-1-ab", {**writer_identity(), "pid": dead_pid()}, age_s=5)
    missing = tmp_path / "missing.csv"
    argv = ["train", "tabular", "--repository", str(tmp_path), "--data", str(missing), "--stale-tmp-after-s", "1"]
    assert cli_main(argv) == 2  # stops at the missing data file, after reclaiming
    assert not dead.exists() and "data file not found" in capsys.readouterr().err
