"""GPUs without TensorFlow: the driver probe, worker i on GPU i mod n, and per-worker GPU memory settings (fakes)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field

import pytest

from loadtests.servers import ROOT
from service.runtime.devices import nvidia_devices_present, worker_gpu_index


def test_driver_probe_reads_dev_and_proc(tmp_path):
    dev, proc = tmp_path / "dev", tmp_path / "gpus"
    dev.mkdir()
    (dev / "nvidiactl").touch()  # control nodes exist without a GPU: not a GPU
    (dev / "nvidia-uvm").touch()
    assert not nvidia_devices_present(dev, proc)
    (dev / "nvidia1").touch()
    assert nvidia_devices_present(dev, proc)
    (proc / "0000:3b:00.0").mkdir(parents=True)
    assert nvidia_devices_present(tmp_path / "none", proc)


def test_gpu_lookup_does_not_import_tensorflow_on_a_cpu_node():
    """TensorFlow is installed in this environment, yet asking for a GPU on this GPU-less machine must not import it."""
    if nvidia_devices_present():
        pytest.skip("this machine has an NVIDIA device")
    code = (
        "import sys; from service.runtime.devices import gpu_visible; print(gpu_visible(), 'tensorflow' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_workers_spread_round_robin_over_gpus():
    assert [worker_gpu_index(i, 2) for i in range(5)] == [0, 1, 0, 1, 0]
    assert [worker_gpu_index(i, 4) for i in range(3)] == [0, 1, 2]
    with pytest.raises(ValueError, match="no GPU"):
        worker_gpu_index(0, 0)


@dataclass
class _Device:
    name: str


@dataclass
class _FakeTFConfig:
    """Records what configure_gpus asks of tf.config (no GPU needed)."""

    gpus: list[_Device]
    calls: list[tuple] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.experimental = self

    def list_physical_devices(self, kind):
        return list(self.gpus)

    def set_visible_devices(self, devices, kind):
        self.calls.append(("visible", [d.name for d in devices]))

    def get_memory_growth(self, device):
        return False

    def set_memory_growth(self, device, on):
        self.calls.append(("growth", device.name, on))

    def LogicalDeviceConfiguration(self, memory_limit):
        return ("limit", memory_limit)

    def set_logical_device_configuration(self, device, configs):
        self.calls.append(("memory", device.name, configs))


@pytest.fixture()
def savedmodel():
    return pytest.importorskip("service.runtime.savedmodel")


def test_worker_three_of_two_gpus_sees_only_gpu_one_with_its_memory_limit(savedmodel):
    config = _FakeTFConfig([_Device("GPU:0"), _Device("GPU:1")])
    devices = savedmodel.configure_gpus(worker_index=3, memory_limit_mib=2048, config=config)
    assert devices == ["/GPU:0"]  # the one visible GPU is GPU:0 inside this process
    assert config.calls == [("visible", ["GPU:1"]), ("memory", "GPU:1", [("limit", 2048)])]


def test_one_process_uses_every_gpu_with_memory_growth(savedmodel):
    config = _FakeTFConfig([_Device("GPU:0"), _Device("GPU:1")])
    assert savedmodel.configure_gpus(config=config) == ["/GPU:0", "/GPU:1"]
    assert config.calls == [("growth", "GPU:0", True), ("growth", "GPU:1", True)]


def test_a_worker_on_a_cpu_node_gets_no_gpu(savedmodel):
    config = _FakeTFConfig([])
    assert savedmodel.configure_gpus(worker_index=1, config=config) == []
    assert config.calls == []
