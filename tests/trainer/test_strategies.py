"""Scale-out: MirroredStrategy over two logical CPUs, MultiWorkerMirroredStrategy over two local workers."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from loadtests.servers import free_ports
from models.card import read_card

TWO_LOGICAL_CPUS = """
import sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from models.cli import main
sys.exit(main(sys.argv[1:]))
"""
COMMON = ("--epochs", "4", "--variants", "float32")


def _env(**extra: str) -> dict:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **extra}


@pytest.mark.slow
def test_mirrored_over_two_logical_cpus(tmp_path):
    proc = subprocess.run([sys.executable, "-c", TWO_LOGICAL_CPUS, "train", "iris", "--strategy", "mirrored",
                           "--repository", str(tmp_path), *COMMON], capture_output=True, text=True, env=_env(),
                          timeout=240, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "strategy: MirroredStrategy with 2 replica(s)" in proc.stdout
    card = read_card(tmp_path / "iris" / "1" / "model_card.json")
    assert card["hyperparameters"]["strategy"] == "mirrored" and card["variants"]["float32"]["published"]


@pytest.mark.slow
def test_multiworker_two_local_workers_only_chief_publishes(tmp_path):
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    workers = []
    for index in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        workers.append(subprocess.Popen(
            [sys.executable, "-m", "models", "train", "iris", "--strategy", "multiworker", "--repository",
             str(tmp_path), *COMMON], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=_env(TF_CONFIG=tf_config)))
    outputs = []
    try:
        for worker in workers:
            outputs.append(worker.communicate(timeout=300))
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    for worker, (out, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err[-2000:]
        assert "CollectiveAllReduceStrategy with 2 replica(s)" in out
    assert "published" in outputs[0][0] and "not the chief worker: nothing published" in outputs[1][0]
    assert sorted(p.name for p in (tmp_path / "iris").iterdir()) == ["1"]
    # Synchronous data parallelism: both workers saw the same losses every epoch.
    epochs = [[line for line in out.splitlines() if line.startswith("[train] epoch")] for out, _ in outputs]
    assert len(epochs[0]) == 4 and [e.split("(")[0] for e in epochs[0]] == [e.split("(")[0] for e in epochs[1]]
