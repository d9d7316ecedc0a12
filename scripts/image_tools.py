"""Docker plumbing for `make images-test`: tools, dockerd, a locally made Python base, builds, containers.

Everything here fails loudly (StepFailed) instead of skipping: the images test exists to prove the
images build and run where CI runs. Containers and a dockerd this module starts are remembered and
stopped by id (`Docker.cleanup`, `DockerDaemon.stop`), never by name.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APT_PACKAGES = ("docker.io", "debootstrap")
# The local base: what python:3.11-slim-bookworm gives the Dockerfiles (python, python -m venv, CA bundle).
BASE_PACKAGES = ("python3", "python3-venv", "python-is-python3", "ca-certificates")
SUITE = "bookworm"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# Trimmed from the debootstrapped rootfs: package caches and documentation no image needs.
ROOTFS_TRIM = ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man", "usr/share/locale")


class StepFailed(RuntimeError):
    """A step of the images test could not run or gave a wrong answer; the message says which and why."""


def sh(cmd: list[str], *, timeout_s: float = 600, check: bool = True, env: dict | None = None) -> str:
    """Run `cmd`, return its stdout; raise StepFailed with its output when it fails and `check` is set."""
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False, env=env)
    except subprocess.TimeoutExpired as exc:
        raise StepFailed(f"`{' '.join(cmd)}` took longer than {timeout_s:.0f} s") from exc
    if check and result.returncode != 0:
        raise StepFailed(
            f"`{' '.join(cmd)}` exited {result.returncode}:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
        )
    return result.stdout


def ensure_tools() -> None:
    """Install docker.io and debootstrap from Debian when missing. Raises StepFailed when not root."""
    missing = [p for p, cmd in zip(APT_PACKAGES, ("dockerd", "debootstrap"), strict=True) if not shutil.which(cmd)]
    if not missing:
        return
    if os.geteuid() != 0:
        raise StepFailed(
            f"{', '.join(missing)} missing and not root: install them (apt-get install {' '.join(missing)})"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print(f"installing {' '.join(missing)} from Debian", flush=True)
    sh(["apt-get", "update", "-qq"], env=env)
    sh(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], env=env)


class DockerDaemon:
    """A running dockerd: the one already there, or one this process starts (and later stops by pid)."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    def ensure_running(self, timeout_s: float = 60) -> None:
        """Start dockerd unless `docker info` already answers; raise StepFailed if it never does."""
        if _docker_answers():
            return
        if os.geteuid() != 0:
            raise StepFailed("no Docker daemon answers and starting dockerd needs root")
        print(f"starting dockerd (log {self.log_path})", flush=True)
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(["dockerd"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline_s = time.monotonic() + timeout_s
        while time.monotonic() < deadline_s:
            if self.process.poll() is not None:
                raise StepFailed(f"dockerd exited {self.process.returncode}: see {self.log_path}")
            if _docker_answers():
                return
            time.sleep(0.5)
        raise StepFailed(f"dockerd did not answer within {timeout_s:.0f} s: see {self.log_path}")

    def stop(self) -> None:
        """Stop the dockerd this object started (SIGTERM to its pid, then wait); no-op otherwise."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def _docker_answers() -> bool:
    result = subprocess.run(["docker", "info"], capture_output=True, timeout=30, check=False)
    return result.returncode == 0


def debian_mirror(files: list[Path] | None = None, default: str = "http://deb.debian.org/debian") -> str:
    """The Debian mirror apt is configured with (deb822 `URIs:` or a one-line `deb` entry), else `default`.

    Reads `files` (default: /etc/apt/sources.list and sources.list.d/*); security mirrors are skipped.
    """
    if files is None:
        files = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in (p for p in files if p.is_file()):
        for line in path.read_text(errors="replace").splitlines():
            words = line.split()
            if words[:1] not in (["URIs:"], ["deb"]):
                continue
            for uri in words[1:]:  # a `deb` line may carry [options] before its URI
                if uri.startswith("http") and "security" not in uri:
                    return uri
    return default


def host_pip_environment() -> dict[str, str]:
    """The pip settings the base bakes in so that pip in a build reaches the index the way the host does.

    Always PIP_CERT (the host's CA bundle is copied into the base); PIP_INDEX_URL and PIP_TRUSTED_HOST
    when the host sets them to something a container can reach (file:// indexes are left out).
    """
    env = {"PIP_CERT": str(HOST_CA_BUNDLE)}
    for key, name in (("index-url", "PIP_INDEX_URL"), ("trusted-host", "PIP_TRUSTED_HOST")):
        value = os.environ.get(name) or _pip_config(f"global.{key}")
        if value and not value.startswith("file:"):
            env[name] = value
    return env


def _pip_config(key: str) -> str:
    result = subprocess.run([sys.executable, "-m", "pip", "config", "get", key], capture_output=True, text=True,
                            timeout=60, check=False)  # fmt: skip
    return result.stdout.strip() if result.returncode == 0 else ""


def make_local_base(tag: str, *, rebuild: bool) -> None:
    """Make `tag`: a minimal Debian bookworm rootfs with python3 (debootstrap), imported into Docker.

    Reuses an existing `tag` unless `rebuild`. The host's CA bundle replaces the rootfs's so that pip
    in a build trusts what the host trusts. Raises StepFailed when debootstrap or the import fails.
    """
    if not rebuild and _image_exists(tag):
        print(f"reusing local base {tag} (--rebuild-base makes it again)", flush=True)
        return
    mirror = debian_mirror()
    rootfs = Path(tempfile.mkdtemp(prefix="batchwise-rootfs-", dir="/var/tmp"))
    try:
        print(f"debootstrap {SUITE} from {mirror}", flush=True)
        sh(["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}", SUITE, str(rootfs), mirror],
           timeout_s=900)  # fmt: skip
        shutil.copyfile(HOST_CA_BUNDLE, rootfs / HOST_CA_BUNDLE.relative_to("/"))
        (rootfs / "usr/lib/python3.11/EXTERNALLY-MANAGED").unlink(missing_ok=True)  # as python:3.11-slim
        for relative in ROOTFS_TRIM:
            shutil.rmtree(rootfs / relative, ignore_errors=True)
        _import_rootfs(rootfs, tag)
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)


def _import_rootfs(rootfs: Path, tag: str) -> None:
    env = {"LANG": "C.UTF-8", **host_pip_environment()}
    changes = [f"ENV {key}={value}" for key, value in env.items()] + ['CMD ["python3"]']
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE)
    cmd = ["docker", "import", *(arg for change in changes for arg in ("--change", change)), "-", tag]
    result = subprocess.run(cmd, stdin=tar.stdout, capture_output=True, text=True, timeout=600, check=False)
    tar.stdout.close()
    if tar.wait(timeout=60) != 0 or result.returncode != 0:
        raise StepFailed(f"docker import of the local base failed: {result.stderr}")


def _image_exists(tag: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", tag], capture_output=True, check=False).returncode == 0


_BUILDS: set[subprocess.Popen] = set()  # docker build clients running now (builds may run in threads)


def build_image(dockerfile: str, tag: str, build_args: dict[str, str], log_path: Path) -> None:
    """`docker build` with the legacy builder from the repository root; the log goes to `log_path`.

    Raises StepFailed with the log's tail when the build fails (or is cancelled by `cancel_builds`).
    """
    cmd = ["docker", "build", "-f", dockerfile, "-t", tag]
    cmd += [*(f"--build-arg={k}={v}" for k, v in build_args.items()), str(ROOT)]
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}
    with log_path.open("w") as log:
        log.write(" ".join(cmd) + "\n")
        log.flush()
        build = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        _BUILDS.add(build)
        try:
            returncode = build.wait(timeout=1800)
        except subprocess.TimeoutExpired:
            build.kill()
            returncode = build.wait()
        finally:
            _BUILDS.discard(build)
    if returncode != 0:
        tail = "".join(log_path.read_text().splitlines(keepends=True)[-40:])
        raise StepFailed(f"building {tag} from {dockerfile} failed (exit {returncode}, log {log_path}):\n{tail}")


def cancel_builds() -> None:
    """Stop every running `docker build` client this process started (the daemon then cancels the build)."""
    for build in list(_BUILDS):
        build.terminate()


def image_info(tag: str) -> dict:
    """`docker image inspect` of `tag` (Size in bytes, Config with User, ExposedPorts, Healthcheck...)."""
    return json.loads(sh(["docker", "image", "inspect", tag]))[0]


class Docker:
    """Starts containers and remembers their ids, so that `cleanup` removes exactly what it started."""

    def __init__(self) -> None:
        self.started: list[str] = []

    def start(self, image: str, *options: str, command: tuple[str, ...] = ()) -> str:
        """`docker run -d [options] image [command]`; return the container id."""
        container = sh(["docker", "run", "-d", *options, image, *command]).strip()
        self.started.append(container)
        return container

    def inspect(self, container: str) -> dict:
        """`docker inspect` of one container (State, HostConfig, Config...)."""
        return json.loads(sh(["docker", "inspect", container]))[0]

    def exec(self, container: str, *command: str) -> subprocess.CompletedProcess[str]:
        """Run `command` inside the running container; never raises on its exit status."""
        return subprocess.run(["docker", "exec", container, *command], capture_output=True, text=True,
                              timeout=120, check=False)  # fmt: skip

    def host_port(self, container: str, port: int) -> int:
        """The loopback host port Docker published for the container's `port`/tcp."""
        return int(sh(["docker", "port", container, f"{port}/tcp"]).splitlines()[0].rsplit(":", 1)[1])

    def logs(self, container: str) -> str:
        """The container's stdout and stderr so far (last 200 lines)."""
        result = subprocess.run(["docker", "logs", "--tail", "200", container], capture_output=True, text=True,
                                timeout=60, check=False)  # fmt: skip
        return result.stdout + result.stderr

    def cleanup(self) -> None:
        """Remove (force) every container this object started, by id; report but survive failures."""
        for container in reversed(self.started):
            result = subprocess.run(["docker", "rm", "-f", container], capture_output=True, text=True,
                                    timeout=120, check=False)  # fmt: skip
            if result.returncode != 0 and "No such container" not in result.stderr:
                print(f"warning: could not remove container {container[:12]}: {result.stderr}", file=sys.stderr)
        self.started.clear()
