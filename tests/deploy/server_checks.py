"""Cross-checks of a server container against our real CLI and Settings (what schema validation cannot see).

Each check returns a list of problems (strings, empty when fine). The container's settings are
resolved exactly as the pod would resolve them: its args go through service.settings.load_settings,
with its BATCHWISE_* env and the ConfigMap-mounted TOML file it names.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pydantic

from service.settings import Settings, load_settings
from service.settings_keys import UnknownSettingError, check_env

ENV_PREFIX = "BATCHWISE_"
SERVER_COMMANDS = (["python", "-m", "service"], ["batchwise-server"])
PROBES = ("startupProbe", "readinessProbe", "livenessProbe")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def env_name_problems(name: str) -> list[str]:
    """A BATCHWISE_SECTION__FIELD env var must name a real Settings field (the server's own check)."""
    try:
        check_env(Settings, {name: ""})
    except UnknownSettingError as exc:
        return [f"env {name}: {exc} (service/settings.py)"]
    return []


def cpu_cores(quantity: str | int | float) -> float:
    """A Kubernetes CPU quantity ("2", "1.5", "500m") in cores."""
    text = str(quantity)
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)


def _resource_field_value(ref: dict, container: dict) -> str | None:
    resource = ref.get("resource", "")
    section, _, name = resource.partition(".")
    resources = container.get("resources", {})
    quantity = resources.get(section, {}).get(name)
    if quantity is None and section == "requests":
        quantity = resources.get("limits", {}).get(name)  # requests default to limits
    if quantity is None or name != "cpu":
        return None
    return str(math.ceil(cpu_cores(quantity) / cpu_cores(ref.get("divisor", "1"))))


def _find(docs: list[dict], kind: str, name: str) -> dict | None:
    return next((d for d in docs if d.get("kind") == kind and d["metadata"]["name"] == name), None)


def env_value(var: dict, container: dict, docs: list[dict]) -> str | None:
    """The value a container env var takes in the pod, or None when only the cluster knows it."""
    if "value" in var:
        return str(var["value"])
    source = var.get("valueFrom", {})
    if "resourceFieldRef" in source:
        return _resource_field_value(source["resourceFieldRef"], container)
    if "configMapKeyRef" in source:
        ref = source["configMapKeyRef"]
        config_map = _find(docs, "ConfigMap", ref["name"])
        return None if config_map is None else config_map.get("data", {}).get(ref["key"])
    return None


@contextlib.contextmanager
def batchwise_environ(env: dict[str, str]) -> Iterator[None]:
    """Run with exactly `env` as the BATCHWISE_* environment (others untouched), then restore."""
    saved = {k: v for k, v in os.environ.items() if k.upper().startswith(ENV_PREFIX)}
    for key in saved:
        del os.environ[key]
    os.environ.update(env)
    try:
        yield
    finally:
        for key in env:
            os.environ.pop(key, None)
        os.environ.update(saved)


def mounted_file(path: str, pod_spec: dict, container: dict, docs: list[dict]) -> tuple[str | None, str]:
    """The content of file `path` in the container when a ConfigMap volume provides it, with an error."""
    volumes = {v["name"]: v for v in pod_spec.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        prefix = mount["mountPath"].rstrip("/") + "/"
        volume = volumes.get(mount["name"], {})
        if not path.startswith(prefix) or "configMap" not in volume:
            continue
        key = path[len(prefix) :]
        items = {i["path"]: i["key"] for i in volume["configMap"].get("items", [])}
        key = items.get(key, key)
        config_map = _find(docs, "ConfigMap", volume["configMap"]["name"])
        if config_map is None:
            return None, f"ConfigMap {volume['configMap']['name']} (mounted at {prefix}) is not in the manifests"
        if key not in config_map.get("data", {}):
            return None, f"ConfigMap {config_map['metadata']['name']} has no key {key!r} for {path}"
        return config_map["data"][key], ""
    return None, f"{path} is not inside any ConfigMap volume mount"


def _config_file_arg(argv: list[str], env: dict[str, str]) -> tuple[str | None, int | None]:
    for i, arg in enumerate(argv):
        if arg == "--config-file" and i + 1 < len(argv):
            return argv[i + 1], i + 1
        if arg.startswith("--config-file="):
            return arg.split("=", 1)[1], i
    return env.get("BATCHWISE_CONFIG_FILE"), None


def _parse(argv: list[str], env: dict[str, str], shown_argv: list[str]) -> tuple[Settings | None, str]:
    stderr = io.StringIO()
    try:
        with batchwise_environ(env), contextlib.redirect_stderr(stderr):
            return load_settings(argv), ""
    except SystemExit:
        return None, f"the server CLI rejects args {shown_argv}: {stderr.getvalue().strip().splitlines()[-1:]}"
    except (pydantic.ValidationError, FileNotFoundError, ValueError) as err:
        return None, f"the server rejects its settings: {err}"


def resolve_settings(pod_spec: dict, container: dict, docs: list[dict]) -> tuple[Settings | None, list[str]]:
    """Settings the server in `container` would run with; None (and problems) if it would refuse to start."""
    problems = [p for var in container.get("env", []) for p in env_name_problems(var["name"])]
    env = {}
    for var in container.get("env", []):
        value = env_value(var, container, docs)
        if var["name"].upper().startswith(ENV_PREFIX) and value is not None:
            env[var["name"]] = value
    shown_argv = [str(a) for a in container.get("args", [])]
    argv = list(shown_argv)
    path, index = _config_file_arg(argv, env)
    with tempfile.TemporaryDirectory() as tmp:
        if path is not None:
            content, error = mounted_file(path, pod_spec, container, docs)
            if content is None:
                return None, [*problems, f"config file: {error}"]
            local = Path(tmp) / "config.toml"
            local.write_text(content)
            if index is None:
                env["BATCHWISE_CONFIG_FILE"] = str(local)
            else:
                argv[index] = str(local) if argv[index] == path else f"--config-file={local}"
        settings, error = _parse(argv, env, shown_argv)
    return settings, [*problems, error] if error else problems


def _ports(container: dict) -> dict[str, int]:
    return {p.get("name", str(p["containerPort"])): p["containerPort"] for p in container.get("ports", [])}


def port_problems(settings: Settings, container: dict) -> list[str]:
    """Container ports and probes must be the ports the server really binds, on a reachable host."""
    ports = _ports(container)
    problems = []
    listeners = [
        ("server", settings.server.host, settings.server.port),
        ("metrics", settings.metrics.host, settings.metrics.port),
    ]
    if settings.http.enabled:
        listeners.append(("http", settings.http.host, settings.http.port))
    for label, host, port in listeners:
        if host in LOOPBACK_HOSTS:
            problems.append(f"{label}.host is {host}: kubelet probes and scrapes reach the pod IP, not loopback")
        if port not in ports.values():
            problems.append(f"{label}.port {port} is not a containerPort (have {sorted(ports.values())})")
    return problems + probe_problems(settings, container)


def probe_problems(settings: Settings, container: dict) -> list[str]:
    """Native gRPC probes on the port that answers plaintext health: server.port, or with TLS on the
    plaintext health-only server.health_port (kubelet's gRPC probes cannot do TLS)."""
    ports = _ports(container)
    server, tls_on = settings.server, settings.security.tls_cert_file is not None
    probe_port = server.health_port if server.health_port is not None else server.port
    problems = []
    if server.health_port is not None and server.health_port not in ports.values():
        problems.append(f"server.health_port {server.health_port} is not a containerPort")
    if tls_on and server.health_port is None:
        problems.append("TLS is on but server.health_port is unset: kubelet's plaintext gRPC probes cannot connect")
    for probe_name in PROBES:
        probe = container.get(probe_name)
        if probe is None:
            problems.append(f"{probe_name} is missing")
        elif probe_name == "readinessProbe" and "httpGet" in probe:
            problems += http_readiness_problems(settings, probe["httpGet"], ports)
        elif "grpc" not in probe:
            problems.append(f"{probe_name} is not a native gRPC probe")
        elif probe["grpc"]["port"] != probe_port or probe["grpc"]["port"] not in ports.values():
            what = "plaintext health port" if server.health_port is not None else "gRPC port"
            problems.append(f"{probe_name} port {probe['grpc']['port']} != {what} {probe_port} / containerPorts")
    return problems


def http_readiness_problems(settings: Settings, http_get: dict, ports: dict[str, int]) -> list[str]:
    """The documented alternative readiness probe: GET /v2/health/ready on the HTTP port (token-free there).

    Kubelet's HTTPS probes do not verify the certificate but present none either, so they cannot pass mTLS.
    """
    port = http_get.get("port")
    port = ports.get(port, port) if isinstance(port, str) else port
    security = settings.security
    problems = []
    if not settings.http.enabled or port != settings.http.port:
        problems.append(f"readinessProbe httpGet port {http_get.get('port')} is not the HTTP port {settings.http.port}")
    if http_get.get("path") != "/v2/health/ready":
        problems.append(f"readinessProbe httpGet path {http_get.get('path')!r} is not '/v2/health/ready'")
    if (http_get.get("scheme", "HTTP") == "HTTPS") != (security.tls_cert_file is not None):
        problems.append("readinessProbe httpGet scheme must be HTTPS exactly when TLS is on")
    if security.tls_client_ca_file is not None:
        problems.append("readinessProbe httpGet cannot pass mTLS (kubelet has no client certificate)")
    return problems


def prestop_sleep_s(container: dict) -> float:
    """Seconds the preStop hook waits (exec `sleep N` or the native sleep action), 0 without one."""
    pre_stop = container.get("lifecycle", {}).get("preStop", {})
    if "sleep" in pre_stop:
        return float(pre_stop["sleep"]["seconds"])
    command = pre_stop.get("exec", {}).get("command", [])
    if len(command) == 2 and command[0] in ("sleep", "/bin/sleep"):
        return float(command[1])
    return 0.0


def lifecycle_problems(settings: Settings, pod_spec: dict, container: dict) -> list[str]:
    """Termination must outlast preStop + the server's drain; models must come from a read-only PVC."""
    problems = []
    grace_s = pod_spec.get("terminationGracePeriodSeconds", 30)
    sleep_s = prestop_sleep_s(container)
    if sleep_s <= 0:
        problems.append("no preStop delay: endpoints may still route to a draining pod")
    if grace_s <= sleep_s + settings.server.grace_period_s:
        problems.append(
            f"terminationGracePeriodSeconds {grace_s} <= preStop {sleep_s} s + "
            f"server.grace_period_s {settings.server.grace_period_s} s: the drain would be killed"
        )
    volumes = {v["name"]: v for v in pod_spec.get("volumes", [])}
    repo = str(settings.repository.path).rstrip("/")
    mount = next((m for m in container.get("volumeMounts", []) if m["mountPath"].rstrip("/") == repo), None)
    if mount is None or "persistentVolumeClaim" not in volumes.get(mount["name"], {}):
        problems.append(f"repository.path {repo} is not a PersistentVolumeClaim mount")
    elif not mount.get("readOnly"):
        problems.append(f"the model repository at {repo} should be mounted readOnly in server pods")
    return problems


def server_container_problems(pod_spec: dict, container: dict, docs: list[dict]) -> list[str]:
    """Every cross-check of one server container; also returns why its settings failed to resolve."""
    if container.get("command") not in SERVER_COMMANDS:
        return [f"container {container['name']}: command {container.get('command')} is not our server CLI"]
    settings, problems = resolve_settings(pod_spec, container, docs)
    if settings is None:
        return problems
    return problems + port_problems(settings, container) + lifecycle_problems(settings, pod_spec, container)
