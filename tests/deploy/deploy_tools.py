"""Find the offline validation tools (pip-installed into the venv) and render kustomizations with them."""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
DOCKER = DEPLOY / "docker"
# Every directory that `kubectl apply -k` may be pointed at (components are rendered through an overlay).
KUSTOMIZATIONS = (
    "overlays/gpu", "overlays/cpu", "overlays/gpu-custom-metrics", "overlays/cpu-mtls", "storage", "training"
)
SERVER_OVERLAYS = ("overlays/gpu", "overlays/cpu", "overlays/gpu-custom-metrics", "overlays/cpu-mtls")
# The oldest Kubernetes we support (everything we use - native gRPC probes, Indexed Jobs, PDB
# unhealthyPodEvictionPolicy - is in its schema) and the newest kubernetes-validate knows.
KUBERNETES_VERSIONS = ("1.29", "1.37")


def tool(name: str) -> str:
    """Path of a command-line tool: the one installed beside this interpreter (the venv), else on PATH.

    Raises FileNotFoundError naming the pip package to install when it is nowhere.
    """
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} not found: pip install -e '.[dev]' (it is in the dev extra)")
    return found


def run(cmd: list[str], *, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    """Run a tool and capture its output; never raises on a non-zero exit (callers assert on it)."""
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False, cwd=ROOT)


@functools.cache
def _rendered_text(kustomization: str) -> str:
    result = run([tool("kubectl"), "kustomize", str(K8S / kustomization)])
    if result.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {kustomization} failed:\n{result.stderr}")
    return result.stdout


def rendered_yaml(kustomization: str) -> str:
    """The multi-document YAML `kubectl kustomize deploy/k8s/<kustomization>` prints (cached)."""
    return _rendered_text(kustomization)


def render(kustomization: str) -> list[dict]:
    """The rendered manifests of deploy/k8s/<kustomization> as dicts (freshly parsed: safe to mutate)."""
    return [doc for doc in yaml.safe_load_all(_rendered_text(kustomization)) if doc]
