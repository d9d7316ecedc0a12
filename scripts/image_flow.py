"""The images test's flow in containers: train in the trainer image, serve with both server images.

Each check raises StepFailed with what it expected and what it got. The servers run as Kubernetes
runs them: uid 10001 from the image, a read-only root filesystem with a tmpfs /tmp, the model
repository mounted read-only. Clients talk to them from the host over published loopback ports.
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from image_tools import Docker, StepFailed, sh

from service.client import BatchwiseClient
from service.healthcheck import check_health
from service.repository.variants import top1_agreement
from service.settings import RuntimeSettings

MODEL = "digits"
SERVER_UID = "10001"
# A request waits this long in the batcher for company, so one is reliably in flight at `docker stop`.
BATCH_TIMEOUT_MS = 1500
STOP_GRACE_S = 30  # docker stop -t: well above the server's own drain (server.grace_period_s, 10 s)
READONLY_OPTIONS = ("--read-only", "--tmpfs", "/tmp:rw,nosuid,nodev,size=256m")


@dataclass
class Server:
    """A server container under test: its id, the loopback ports its gRPC and metrics ports map to."""

    name: str
    container: str
    grpc_port: int
    metrics_port: int
    answers: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"


def train(docker: Docker, image: str, repository: Path, epochs: int) -> dict:
    """Run the trainer image on `repository` (mounted at /models); return the published model card."""
    container = docker.start(
        image, *READONLY_OPTIONS, "-v", f"{repository}:/models",
        command=("train", MODEL, "--repository", "/models", "--epochs", str(epochs), "--quiet"),
    )  # fmt: skip
    code = int(sh(["docker", "wait", container], timeout_s=900).strip())
    logs = docker.logs(container)
    if code != 0:
        raise StepFailed(f"the trainer exited {code}:\n{logs}")
    cards = sorted(repository.glob(f"{MODEL}/*/model_card.json"))
    if not cards:
        raise StepFailed(f"the trainer exited 0 but published no {MODEL}/<version>/model_card.json:\n{logs}")
    card = json.loads(cards[-1].read_text())
    print(f"  trainer published {cards[-1].parent.relative_to(repository)}: {sorted(card['variants'])}", flush=True)
    return card


def start_server(docker: Docker, name: str, image: str, repository: Path, grpc_port: int) -> Server:
    """Start a server container on `repository` with its gRPC port at `grpc_port` (BATCHWISE_SERVER__PORT)."""
    options = [*READONLY_OPTIONS, "-v", f"{repository}:/models:ro", "--health-interval", "2s"]
    options += ["-p", f"127.0.0.1::{grpc_port}", "-p", "127.0.0.1::8502"]
    # mode=fixed: the adaptive default would run a lone request at once, and nothing would be in flight.
    env = {"BATCHWISE_SERVER__PORT": str(grpc_port), "BATCHWISE_BATCHING__MODE": "fixed",
           "BATCHWISE_BATCHING__BATCH_TIMEOUT_MS": str(BATCH_TIMEOUT_MS),
           "BATCHWISE_BATCHING__BATCH_IDLE_TIMEOUT_MS": "0"}  # fmt: skip
    options += [arg for key, value in env.items() for arg in ("-e", f"{key}={value}")]
    container = docker.start(image, *options)
    return Server(name, container, docker.host_port(container, grpc_port), docker.host_port(container, 8502))


def wait_healthy(docker: Docker, server: Server, timeout_s: float = 240) -> float:
    """Wait for Docker's HEALTHCHECK (the image's own command) to report healthy; return the seconds taken."""
    started_s = time.monotonic()
    while time.monotonic() - started_s < timeout_s:
        state = docker.inspect(server.container)["State"]
        if not state["Running"]:
            raise StepFailed(f"{server.name} exited {state['ExitCode']}:\n{docker.logs(server.container)}")
        if state.get("Health", {}).get("Status") == "healthy":
            return time.monotonic() - started_s
        time.sleep(1)
    health = docker.inspect(server.container)["State"].get("Health")
    raise StepFailed(f"{server.name} not healthy after {timeout_s:.0f} s: {health}\n{docker.logs(server.container)}")


def check_api(server: Server, card: dict, variant: str) -> None:
    """Health, metadata, a predict on the card's samples, and /metrics showing `variant` served it."""
    status = check_health(server.target, "", 10.0)
    if status != "SERVING":
        raise StepFailed(f"{server.name}: grpc.health.v1 says {status}")
    with BatchwiseClient(server.target, timeout_s=30) as client:
        metadata = client.metadata(MODEL)
        if "serving_default" not in metadata.get("signature_def", {}):
            raise StepFailed(f"{server.name}: metadata has no serving_default: {metadata}")
        version, outputs = client.predict(MODEL, _sample_inputs(card))
    if version != card["version"]:
        raise StepFailed(f"{server.name}: served version {version}, the trainer published {card['version']}")
    server.answers = outputs
    compare(server.name, outputs, card["samples"]["outputs"])
    text = urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=10).read().decode()
    pattern = rf'batchwise_predict_requests_total\{{[^}}]*model="{MODEL}"[^}}]*variant="{variant}"[^}}]*\}} [1-9]'
    if not re.search(pattern, text.replace('code="OK",', "")):
        found = [line for line in text.splitlines() if line.startswith("batchwise_predict_requests_total")]
        raise StepFailed(f"{server.name}: /metrics shows no OK predict on variant {variant}: {found}")
    print(f"  {server.name}: health SERVING, metadata, predict v{version} on {variant}, /metrics ok", flush=True)


def _sample_inputs(card: dict) -> dict[str, np.ndarray]:
    inputs = card["signature"]["inputs"]
    return {name: np.asarray(value, dtype=inputs[name]["dtype"]) for name, value in card["samples"]["inputs"].items()}


def compare(where: str, outputs: dict[str, np.ndarray], expected: dict) -> None:
    """Compare `outputs` with `expected` (the card's, or another server's) as the consistency guard does:
    max |diff| <= consistency_atol and top-1 agreement >= min_top1_agreement, with the server's defaults.
    """
    runtime = RuntimeSettings()
    for name, value in expected.items():
        want, got = np.asarray(value, dtype=np.float64), np.asarray(outputs.get(name), dtype=np.float64)
        if got.shape != want.shape:
            raise StepFailed(f"{where}: output {name!r} has shape {got.shape}, expected {want.shape}")
        error = float(np.max(np.abs(got - want), initial=0.0))
        agreement = top1_agreement(got, want) if got.ndim == 2 else 1.0
        if not (error <= runtime.consistency_atol and agreement >= runtime.min_top1_agreement):
            raise StepFailed(f"{where}: output {name!r} max |diff| {error:.4g} (atol {runtime.consistency_atol}), "
                             f"top-1 agreement {agreement:.3f} (min {runtime.min_top1_agreement})")  # fmt: skip
        print(f"  {where}: {name!r} max |diff| {error:.3g}, top-1 agreement {agreement:.3f}", flush=True)


def check_cpu_container(docker: Docker, server: Server) -> None:
    """No TensorFlow, uid 10001, a read-only root filesystem (writes outside /tmp fail)."""
    probe = docker.exec(server.container, "python", "-c", "import tensorflow")
    if probe.returncode == 0 or "ModuleNotFoundError" not in probe.stderr:
        raise StepFailed(f"`import tensorflow` in the CPU image: exit {probe.returncode}, {probe.stderr[-500:]}")
    check_user_and_readonly(docker, server)
    print("  cpu: `import tensorflow` fails (ModuleNotFoundError)", flush=True)


def check_user_and_readonly(docker: Docker, server: Server) -> None:
    """The server process runs as uid 10001 and cannot write its root filesystem."""
    uid = docker.exec(server.container, "id", "-u").stdout.strip()
    if uid != SERVER_UID:
        raise StepFailed(f"{server.name} runs as uid {uid}, expected {SERVER_UID}")
    if not docker.inspect(server.container)["HostConfig"]["ReadonlyRootfs"]:
        raise StepFailed(f"{server.name} was not started with a read-only root filesystem")
    write = docker.exec(server.container, "sh", "-c", "touch /opt/venv/probe")
    if write.returncode == 0 or "Read-only file system" not in write.stderr:
        raise StepFailed(f"{server.name}: writing /opt/venv did not fail as read-only: {write.stderr}")
    print(f"  {server.name}: uid {uid}, read-only root filesystem", flush=True)


def check_drain(docker: Docker, server: Server, card: dict) -> float:
    """`docker stop` during a Predict: the call completes, the process exits 0 in the grace period.

    Returns the seconds `docker stop` took.
    """
    result: dict[str, object] = {}

    def call() -> None:
        try:
            with BatchwiseClient(server.target, timeout_s=STOP_GRACE_S) as client:
                result["outputs"] = client.predict(MODEL, _sample_inputs(card))[1]
        except Exception as exc:  # reported below: the drain check fails with it
            result["error"] = exc

    caller = threading.Thread(target=call, daemon=True)
    caller.start()
    _wait_in_flight(server)
    started_s = time.monotonic()
    sh(["docker", "stop", "-t", str(STOP_GRACE_S), server.container], timeout_s=STOP_GRACE_S + 30)
    stop_s = time.monotonic() - started_s
    caller.join(timeout=30)
    state = docker.inspect(server.container)["State"]
    if "outputs" not in result:
        raise StepFailed(f"{server.name}: the in-flight Predict did not complete: {result.get('error')}")
    if state["ExitCode"] != 0 or stop_s >= STOP_GRACE_S:
        raise StepFailed(f"{server.name}: exit code {state['ExitCode']} after {stop_s:.1f} s (grace {STOP_GRACE_S} s)"
                         f"\n{docker.logs(server.container)}")  # fmt: skip
    compare(f"{server.name} (drained call)", result["outputs"], card["samples"]["outputs"])
    print(f"  {server.name}: drained an in-flight Predict, exit 0 after {stop_s:.1f} s", flush=True)
    return stop_s


def _wait_in_flight(server: Server, timeout_s: float = 10) -> None:
    deadline_s = time.monotonic() + timeout_s
    url = f"http://127.0.0.1:{server.metrics_port}/metrics"
    while time.monotonic() < deadline_s:
        text = urllib.request.urlopen(url, timeout=5).read().decode()
        match = re.search(r"^batchwise_inflight_requests (\S+)$", text, re.MULTILINE)
        if match and float(match.group(1)) >= 1:
            return
        time.sleep(0.05)
    raise StepFailed(f"{server.name}: the Predict never showed as in flight (batchwise_inflight_requests)")
