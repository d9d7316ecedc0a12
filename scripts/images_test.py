"""`make images-test`: build every image on a locally made base and run trainer -> servers in containers.

    python scripts/images_test.py [--epochs 3] [--rebuild-base] [--keep-dockerd]   (as root)

1. Installs docker.io and debootstrap from Debian when missing; starts dockerd when none answers.
2. Makes a local Python base (debootstrap bookworm + python3, imported into Docker): no registry needed.
3. Builds the cpu, gpu and trainer images with the legacy builder, tagged as deploy/k8s references them;
   the gpu and trainer images without the CUDA wheels (CUDA_WHEELS=false: same TensorFlow, CPU only).
4. Trains the digits recipe in the trainer container into a host folder; serves it with the CPU image
   (int8, no TensorFlow, uid 10001, read-only root, HEALTHCHECK healthy on a non-default port) and the
   GPU image (SavedModel, on CPU); checks both answer the model card's samples and agree within the
   consistency guard's tolerance; `docker stop` drains an in-flight Predict on each (exit 0).
5. Checks the CPU image stays under 400 MB; prints the image sizes and step times.
Stops every container it started (and a dockerd it started), by id. Any failed step exits 1, loudly.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the light client and settings, from this checkout

import image_flow as flow  # noqa: E402
import image_tools as tools  # noqa: E402

LOCAL_BASE = "batchwise-local/python:3.11-bookworm"
CPU_IMAGE_MAX_BYTES = 400 * 1000 * 1000
CPU_GRPC_PORT = 18500  # not the default 8500: the HEALTHCHECK must follow the configured port
# image -> (Dockerfile, the kustomization whose `images:` entry names it, build arguments for CI)
IMAGES = {
    "cpu": ("deploy/docker/cpu.Dockerfile", "deploy/k8s/overlays/cpu", {}),
    "gpu": ("deploy/docker/gpu.Dockerfile", "deploy/k8s/overlays/gpu", {"CUDA_WHEELS": "false"}),
    "trainer": ("deploy/docker/trainer.Dockerfile", "deploy/k8s/training", {"CUDA_WHEELS": "false"}),
}
TIMES_S: dict[str, float] = {}


@contextmanager
def step(name: str):
    """Print the step, time it into TIMES_S; exceptions propagate (the run fails loudly)."""
    print(f"== {name}", flush=True)
    started_s = time.monotonic()
    try:
        yield
    finally:
        TIMES_S[name] = time.monotonic() - started_s
        print(f"   {name}: {TIMES_S[name]:.0f} s", flush=True)


def k8s_image(kustomization: str) -> str:
    """`newName:newTag` of the kustomization's `images:` entry: the tag the manifests deploy."""
    (entry,) = yaml.safe_load((ROOT / kustomization / "kustomization.yaml").read_text())["images"]
    return f"{entry['newName']}:{entry['newTag']}"


def k8s_container_ports(path: str) -> set[int]:
    """containerPort values in one manifest file (the base Deployment, the training Job)."""
    ports = set()
    for doc in yaml.safe_load_all((ROOT / path).read_text()):
        for container in (doc or {}).get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
            ports |= {p["containerPort"] for p in container.get("ports", [])}
    return ports


def build_all(workdir: Path) -> dict[str, str]:
    """Build the three images at once (their pip downloads and layer writes overlap); return {image: tag}.

    Raises StepFailed naming every image that failed, with its log's tail.
    """
    tags = {image: k8s_image(kustomization) for image, (_, kustomization, _) in IMAGES.items()}

    def build(image: str) -> float:
        dockerfile, _, build_args = IMAGES[image]
        started_s = time.monotonic()
        tools.build_image(dockerfile, tags[image], {"PYTHON_IMAGE": LOCAL_BASE, **build_args},
                          workdir / f"build-{image}.log")  # fmt: skip
        print(f"  built {image} as {tags[image]} in {time.monotonic() - started_s:.0f} s", flush=True)
        return time.monotonic() - started_s

    with step("build cpu, gpu and trainer (in parallel)"), ThreadPoolExecutor(len(IMAGES)) as pool:
        futures = {image: pool.submit(build, image) for image in IMAGES}
        failures = []
        try:
            for image, future in futures.items():
                try:
                    TIMES_S[f"  build {image}"] = future.result()
                except tools.StepFailed as exc:
                    failures.append(str(exc))
        except BaseException:  # Ctrl-C: stop the other builds instead of waiting for them
            tools.cancel_builds()
            raise
        if failures:
            raise tools.StepFailed("\n".join(failures))
    return tags


def check_images(tags: dict[str, str]) -> dict[str, int]:
    """Sizes, users and exposed ports of the built images vs the manifests; return {image: bytes}."""
    sizes = {image: tools.image_info(tag)["Size"] for image, tag in tags.items()}
    if sizes["cpu"] >= CPU_IMAGE_MAX_BYTES:
        raise tools.StepFailed(f"the CPU image is {sizes['cpu'] / 1e6:.0f} MB, over {CPU_IMAGE_MAX_BYTES / 1e6:.0f} MB")
    wanted = {"cpu": "deploy/k8s/base/deployment.yaml", "gpu": "deploy/k8s/base/deployment.yaml",
              "trainer": "deploy/k8s/training/train-job.yaml"}  # fmt: skip
    for image, manifest in wanted.items():
        config = tools.image_info(tags[image])["Config"]
        exposed = {int(port.split("/")[0]) for port in config.get("ExposedPorts") or {}}
        missing = k8s_container_ports(manifest) - exposed
        if missing or config["User"].split(":")[0] != flow.SERVER_UID:
            raise tools.StepFailed(f"{image}: user {config['User']}, {manifest} ports {sorted(missing)} not exposed")
    return sizes


def run_flow(docker: tools.Docker, tags: dict[str, str], workdir: Path, epochs: int) -> None:
    """Trainer -> repository folder -> CPU and GPU servers; the checks of image_flow. Raises StepFailed."""
    repository = workdir / "repository"
    repository.mkdir(mode=0o777)
    repository.chmod(0o777)  # the trainer runs as uid 10001
    with step("train digits in the trainer container"):
        card = flow.train(docker, tags["trainer"], repository, epochs)
    with step("serve with the CPU image (int8, port 18500)"):
        cpu = flow.start_server(docker, "cpu", tags["cpu"], repository, CPU_GRPC_PORT)
        healthy_s = flow.wait_healthy(docker, cpu)
        print(f"  cpu: HEALTHCHECK healthy on port {CPU_GRPC_PORT} after {healthy_s:.0f} s", flush=True)
        flow.check_api(cpu, card, "int8")
        flow.check_cpu_container(docker, cpu)
    with step("serve with the GPU image (SavedModel, on CPU)"):
        gpu = flow.start_server(docker, "gpu", tags["gpu"], repository, 8500)
        flow.wait_healthy(docker, gpu)
        flow.check_api(gpu, card, "savedmodel")
        flow.check_user_and_readonly(docker, gpu)
    with step("the two servers agree"):
        flow.compare("cpu (int8) vs gpu (savedmodel)", cpu.answers, {k: v.tolist() for k, v in gpu.answers.items()})
    with step("docker stop drains each server"):
        for server in (cpu, gpu):
            TIMES_S[f"docker stop {server.name}"] = flow.check_drain(docker, server, card)


def report(sizes: dict[str, int], tags: dict[str, str], total_s: float) -> None:
    """Print image sizes and step times (the figures deploy/README.md quotes)."""
    print("\nimage sizes (docker image inspect .Size):")
    for image, size in sizes.items():
        print(f"  {image:8} {tags[image]:55} {size / 1e6:8.0f} MB")
    print("step times:")
    for name, seconds in TIMES_S.items():
        print(f"  {seconds:6.0f} s  {name}")
    print(f"images test passed in {total_s:.0f} s")


def main(argv: list[str] | None = None) -> int:
    """Run the whole images test; return 0 when every step passed, 1 otherwise."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="digits training epochs (default 3)")
    parser.add_argument("--rebuild-base", action="store_true", help="make the local base even if it exists")
    parser.add_argument("--keep-dockerd", action="store_true", help="leave a dockerd this run started running")
    args = parser.parse_args(argv)
    started_s = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="batchwise-images-", dir="/var/tmp"))
    daemon, docker = tools.DockerDaemon(workdir / "dockerd.log"), tools.Docker()
    try:
        with step("docker.io, debootstrap, dockerd"):
            tools.ensure_tools()
            daemon.ensure_running()
        with step(f"local base {LOCAL_BASE}"):
            tools.make_local_base(LOCAL_BASE, rebuild=args.rebuild_base)
        tags = build_all(workdir)
        sizes = check_images(tags)
        run_flow(docker, tags, workdir, args.epochs)
    except tools.StepFailed as exc:
        print(f"\nimages test FAILED: {exc}\n(work folder kept: {workdir})", file=sys.stderr)
        return 1
    finally:
        docker.cleanup()
        if not args.keep_dockerd:
            daemon.stop()
    report(sizes, tags, time.monotonic() - started_s)
    tools.shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
