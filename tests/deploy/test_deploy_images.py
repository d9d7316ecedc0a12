"""Offline validation of deploy/docker: hadolint, and the images' commands, settings and pins vs our code.

No image is built here: these tests check what can be checked without a Docker engine, in seconds.
`make images-test` (scripts/images_test.py) builds and runs the images for real.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from deploy_tools import DOCKER, ROOT, run, tool
from dockerfile import Stage, global_args, parse
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from server_checks import batchwise_environ, env_name_problems

from service.healthcheck import build_parser, configured_target
from service.settings import Settings, load_settings

IMAGES = {"gpu": "tf", "cpu": "cpu", "trainer": "train"}  # image -> pyproject extra it installs
SERVER_IMAGES = ("gpu", "cpu")
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _final(image: str) -> Stage:
    return parse(DOCKER / f"{image}.Dockerfile")[-1]


def _lock(image: str) -> dict[str, str]:
    lines = (DOCKER / "requirements" / f"{image}.txt").read_text().splitlines()
    pins = [line.split("==") for line in lines if line and not line.startswith("#")]
    return {canonicalize_name(name): version for name, version in pins}


def _module_or_skip(module: str) -> None:
    package = module.partition(".")[0]
    if importlib.util.find_spec(package) is None or importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not in this tree yet (written in parallel); the check runs once it is")


@pytest.mark.parametrize("image", IMAGES)
def test_hadolint_passes_with_no_ignored_rules(image: str) -> None:
    dockerfile = DOCKER / f"{image}.Dockerfile"
    for line in dockerfile.read_text().splitlines():
        if "hadolint ignore" in line:
            assert re.search(r"ignore=\S+\s+\S+", line), f"unjustified hadolint ignore: {line}"
    assert not (ROOT / ".hadolint.yaml").exists(), "rules are ignored inline, with a reason, not globally"
    result = run([tool("hadolint"), "--failure-threshold", "style", str(dockerfile)])
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


@pytest.mark.parametrize("image", IMAGES)
def test_image_runs_as_non_root_from_pinned_bases(image: str) -> None:
    stages = parse(DOCKER / f"{image}.Dockerfile")
    names = {s.name for s in stages if s.name}
    for stage in stages:
        if stage.base not in names:
            assert re.search(r":[\w.-]+$", stage.base) and not stage.base.endswith(":latest"), stage.base
    user = stages[-1].args("USER")[-1].split(":")[0]
    assert user not in ("root", "0"), f"{image} runs as {user}"


@pytest.mark.parametrize("image", IMAGES)
def test_base_image_is_a_build_argument_and_no_buildkit_is_needed(image: str) -> None:
    """CI builds with a locally made base (`--build-arg PYTHON_IMAGE=...`) and the legacy builder."""
    dockerfile = DOCKER / f"{image}.Dockerfile"
    assert global_args(dockerfile) == {"PYTHON_IMAGE": "python:3.11-slim-bookworm"}
    froms = [line.split()[1] for line in dockerfile.read_text().splitlines() if line.startswith("FROM ")]
    assert froms and all(base == "${PYTHON_IMAGE}" for base in froms), froms
    assert not dockerfile.read_text().startswith("# syntax="), "the syntax directive makes BuildKit pull a frontend"
    assert "--mount=" not in dockerfile.read_text(), "RUN --mount needs BuildKit"


@pytest.mark.parametrize("image", ("gpu", "trainer"))
def test_cuda_lock_pins_tensorflow_and_cuda_extra(image: str) -> None:
    """<image>-cuda.txt holds what `tensorflow[and-cuda]` adds; <image>.txt pins TensorFlow as pyproject asks."""
    tf_requirement = next(Requirement(r) for r in PYPROJECT["project"]["optional-dependencies"][IMAGES[image]]
                          if Requirement(r).name == "tensorflow")  # fmt: skip
    assert tf_requirement.specifier.contains(_lock(image)["tensorflow"]), (_lock(image)["tensorflow"], tf_requirement)
    cuda = _lock(f"{image}-cuda")
    assert cuda and not set(cuda) & set(_lock(image)), "a package is pinned in both lock files"
    and_cuda = [Requirement(r) for r in importlib.metadata.requires("tensorflow") or []
                if Requirement(r).marker and Requirement(r).marker.evaluate({"extra": "and-cuda"})
                and not Requirement(r).marker.evaluate({"extra": ""})]  # fmt: skip
    assert and_cuda, "the installed tensorflow declares no and-cuda extra"
    for requirement in and_cuda:
        name = canonicalize_name(requirement.name)
        assert name in cuda and requirement.specifier.contains(cuda[name]), (name, cuda.get(name), str(requirement))
    copied = " ".join(rest for stage in parse(DOCKER / f"{image}.Dockerfile") for rest in stage.args("COPY"))
    assert f"deploy/docker/requirements/{image}-cuda.txt" in copied


@pytest.mark.parametrize("image", IMAGES)
def test_lock_pins_every_dependency_pyproject_asks_for(image: str) -> None:
    """The image installs deploy/docker/requirements/<image>.txt; it must satisfy pyproject (base + extra)."""
    lock = _lock(image)
    wanted = PYPROJECT["project"]["dependencies"] + PYPROJECT["project"]["optional-dependencies"][IMAGES[image]]
    for requirement in map(Requirement, wanted):
        name = canonicalize_name(requirement.name)
        assert name in lock, f"{image}.txt does not pin {name}"
        assert requirement.specifier.contains(lock[name], prereleases=True), (name, lock[name], str(requirement))
    copied = " ".join(rest for stage in parse(DOCKER / f"{image}.Dockerfile") for rest in stage.args("COPY"))
    assert f"deploy/docker/requirements/{image}.txt" in copied


def test_cpu_image_has_no_tensorflow() -> None:
    assert not {"tensorflow", "tensorflow-cpu", "keras"} & set(_lock("cpu"))


@pytest.mark.parametrize("image", SERVER_IMAGES)
def test_server_image_command_env_and_ports_match_our_cli(image: str) -> None:
    stage = _final(image)
    entrypoint, cmd = stage.exec_form("ENTRYPOINT"), stage.exec_form("CMD") or []
    assert entrypoint == ["python", "-m", "service"]
    env = {k: v for k, v in stage.env().items() if k.startswith("BATCHWISE_")}
    assert [p for name in env for p in env_name_problems(name)] == []
    settings = _load_with_env(cmd, env)
    exposed = {int(port) for rest in stage.args("EXPOSE") for port in rest.split()}
    assert {settings.server.port, settings.metrics.port, settings.http.port} <= exposed
    assert settings.server.host == settings.metrics.host == settings.http.host == "0.0.0.0"
    assert [str(settings.repository.path)] == [v.strip('[]" ') for v in stage.args("VOLUME")]


def _load_with_env(argv: list[str], env: dict[str, str]) -> Settings:
    with batchwise_environ(env):
        return load_settings(argv)


@pytest.mark.parametrize("image", SERVER_IMAGES)
def test_healthcheck_uses_our_probe_on_the_grpc_port(image: str) -> None:
    stage = _final(image)
    options, command = stage.healthcheck()
    assert command is not None and command[:3] == ["python", "-m", "service.healthcheck"]
    assert importlib.util.find_spec("service.healthcheck") is not None
    args = build_parser().parse_args(command[3:])
    assert args.target is None, "a fixed --target goes stale when the port is configured (BATCHWISE_SERVER__PORT)"
    env = {k: v for k, v in stage.env().items() if k.startswith("BATCHWISE_")}
    for port in (env["BATCHWISE_SERVER__PORT"], "18500"):
        with batchwise_environ({**env, "BATCHWISE_SERVER__PORT": port}):
            assert configured_target() == f"127.0.0.1:{port}"
    assert args.timeout_s < float(options["timeout"].rstrip("s")), "the probe must answer before Docker kills it"


def test_server_entrypoint_module_exists() -> None:
    _module_or_skip("service.__main__")


def test_trainer_entrypoint_and_job_flags_exist_in_the_trainer_cli() -> None:
    """The trainer image runs `python -m models`; the training Job passes flags that CLI must accept."""
    assert _final("trainer").exec_form("ENTRYPOINT") == ["python", "-m", "models"]
    assert _final("trainer").healthcheck() == ({}, None)
    _module_or_skip("models.__main__")
    from deploy_tools import render

    (job,) = [d for d in render("training") if d["kind"] == "Job"]
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    result = subprocess.run([sys.executable, "-m", "models", args[0], "--help"], capture_output=True, text=True,
                            timeout=120, check=False, cwd=ROOT)  # fmt: skip
    assert result.returncode == 0, result.stderr
    for flag in (a.split("=", 1)[0] for a in args if a.startswith("--")):
        assert re.search(rf"{re.escape(flag)}(?![\w-])", result.stdout), f"`python -m models {args[0]}` has no {flag}"


def test_dockerignore_lets_in_what_the_images_copy() -> None:
    allowed = [line[1:].rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.startswith("!")]  # fmt: skip
    for image in IMAGES:
        for stage in parse(DOCKER / f"{image}.Dockerfile"):
            for rest in stage.args("COPY"):
                if rest.startswith("--from"):
                    continue
                for source in (s.rstrip("/") for s in rest.split()[:-1]):
                    assert any(source == a or source.startswith(a + "/") for a in allowed), (image, source)
                    assert Path(ROOT / source).exists() or source == "models", (image, source)
