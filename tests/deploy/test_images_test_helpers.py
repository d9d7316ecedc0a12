"""The pure helpers of `make images-test` (scripts/image_tools.py, scripts/images_test.py), without Docker."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from deploy_tools import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import image_tools
import images_test


def test_debian_mirror_reads_deb822_and_one_line_sources(tmp_path: Path) -> None:
    deb822 = tmp_path / "debian.sources"
    deb822.write_text("Types: deb\nURIs: http://mirror.example/debian-security\n\n"
                      "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\n")  # fmt: skip
    one_line = tmp_path / "sources.list"
    one_line.write_text("# comment\ndeb [arch=amd64] http://other.example/debian bookworm main\n")
    assert image_tools.debian_mirror([deb822]) == "http://mirror.example/debian"
    assert image_tools.debian_mirror([tmp_path / "missing", one_line]) == "http://other.example/debian"
    assert image_tools.debian_mirror([tmp_path / "missing"]) == "http://deb.debian.org/debian"


def test_host_pip_environment_bakes_reachable_index_settings_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIP_INDEX_URL", "https://pypi.example/simple")
    monkeypatch.setenv("PIP_TRUSTED_HOST", "file:///opt/pypi/simple")
    env = image_tools.host_pip_environment()
    assert env["PIP_CERT"] == str(image_tools.HOST_CA_BUNDLE)
    assert env["PIP_INDEX_URL"] == "https://pypi.example/simple"
    assert "PIP_TRUSTED_HOST" not in env, "file:// settings mean nothing inside a container"


@pytest.mark.parametrize("image", images_test.IMAGES)
def test_images_are_tagged_as_the_manifests_deploy_them(image: str) -> None:
    dockerfile, kustomization, _ = images_test.IMAGES[image]
    assert (ROOT / dockerfile).is_file()
    name, tag = images_test.k8s_image(kustomization).rsplit(":", 1)
    assert name.endswith({"cpu": "/server-cpu", "gpu": "/server-gpu", "trainer": "/trainer"}[image]) and tag


def test_manifest_ports_are_read_from_the_server_and_training_pods() -> None:
    assert {8500, 8502} <= images_test.k8s_container_ports("deploy/k8s/base/deployment.yaml")
    assert images_test.k8s_container_ports("deploy/k8s/training/train-job.yaml") == {2222}
