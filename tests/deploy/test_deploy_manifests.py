"""Offline validation of deploy/k8s: kustomize renders, strict schemas, and our own cross-checks."""

from __future__ import annotations

import collections.abc
import math
from pathlib import Path

import pytest
import yaml
from deploy_tools import DEPLOY, KUBERNETES_VERSIONS, KUSTOMIZATIONS, SERVER_OVERLAYS, render, run, tool
from manifest_checks import CRD_KINDS, is_crd, manifest_problems
from server_checks import cpu_cores, resolve_settings

from service.settings import Settings

CLUSTER_SCOPED = {"Namespace"}


def _deployment(docs: list[dict]) -> dict:
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    return deployment


def _server(docs: list[dict]) -> dict:
    return _deployment(docs)["spec"]["template"]["spec"]["containers"][0]


def _settings(docs: list[dict]) -> Settings:
    settings, problems = resolve_settings(_deployment(docs)["spec"]["template"]["spec"], _server(docs), docs)
    assert settings is not None, problems
    return settings


def _kind(docs: list[dict], kind: str) -> dict:
    return next(d for d in docs if d["kind"] == kind)


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_kustomize_renders_into_the_batchwise_namespace(kustomization: str) -> None:
    docs = render(kustomization)
    assert docs
    for doc in docs:
        if doc["kind"] not in CLUSTER_SCOPED:
            assert doc["metadata"].get("namespace") == "batchwise", doc["metadata"]["name"]


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_kubernetes_validate_strict_has_no_errors_or_warnings(kustomization: str, tmp_path: Path) -> None:
    """Every built-in kind validates strictly (unknown fields fail) against our oldest and newest Kubernetes.

    kubernetes-validate only warns about kinds it has no schema for; a warning fails here. The CRDs
    we ship (PodMonitor) are taken out first and checked structurally by manifest_checks instead.
    """
    docs = render(kustomization)
    manifest = tmp_path / f"{kustomization.replace('/', '-')}.yaml"
    manifest.write_text(yaml.safe_dump_all([d for d in docs if not is_crd(d)]))
    versions = [arg for version in KUBERNETES_VERSIONS for arg in ("-k", version)]
    result = run([tool("kubernetes-validate"), "--strict", "--quiet", *versions, str(manifest)])
    bad = [line for line in result.stdout.splitlines() if line.split(" ", 1)[0] in ("WARN", "ERROR", "FATAL")]
    assert result.returncode == 0 and not bad, result.stdout + result.stderr


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_cross_checks_pass(kustomization: str) -> None:
    assert manifest_problems(render(kustomization)) == []


def test_only_known_crds_are_shipped() -> None:
    crds = {(d["apiVersion"], d["kind"]) for k in KUSTOMIZATIONS for d in render(k) if "." in d["apiVersion"]}
    builtin = {c for c in crds if c[0].split("/")[0].endswith("k8s.io")}
    assert crds - builtin <= CRD_KINDS


def test_overlays_can_share_one_namespace() -> None:
    """GPU, CPU, storage and training are applied side by side: no name clashes, no cross-selection."""
    seen: dict[tuple[str, str], str] = {}
    for kustomization in ("overlays/gpu", "overlays/cpu", "storage", "training"):
        for doc in render(kustomization):
            key = (doc["kind"], doc["metadata"]["name"])
            assert key not in seen, f"{key} is in both {seen[key]} and {kustomization}"
            seen[key] = kustomization
    gpu, cpu = render("overlays/gpu"), render("overlays/cpu")
    for mine, other in ((gpu, cpu), (cpu, gpu)):
        other_labels = _deployment(other)["spec"]["template"]["metadata"]["labels"]
        for doc in mine:
            selector = doc.get("spec", {}).get("selector", {})
            selector = selector.get("matchLabels", selector) if isinstance(selector, dict) else {}
            if selector and isinstance(selector, collections.abc.Mapping):
                assert not all(other_labels.get(k) == v for k, v in selector.items()), doc["metadata"]["name"]


def test_gpu_overlay_uses_the_gpu() -> None:
    docs = render("overlays/gpu")
    pod, server, settings = _deployment(docs)["spec"]["template"]["spec"], _server(docs), _settings(docs)
    assert int(server["resources"]["limits"]["nvidia.com/gpu"]) >= 1
    assert pod["nodeSelector"] and any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
    assert settings.runtime.variant == "savedmodel" and settings.runtime.device == "gpu"
    assert settings.batching.max_batch_size > _settings(render("overlays/cpu")).batching.max_batch_size
    assert server["image"].rsplit(":", 1)[0].endswith("server-gpu")


def test_cpu_overlay_serves_int8_with_workers_matching_the_cpu_request() -> None:
    docs = render("overlays/cpu")
    server, settings = _server(docs), _settings(docs)
    requested_cores = cpu_cores(server["resources"]["requests"]["cpu"])
    assert settings.runtime.variant == "int8" and settings.runtime.device == "cpu"
    assert settings.server.worker_count == math.ceil(requested_cores)  # one worker process per core
    threads = settings.server.worker_count * settings.runtime.tflite_threads * settings.batching.num_batch_workers
    assert threads <= requested_cores
    assert 0 < settings.server.connection_age_s <= 120  # connections re-spread over the workers
    assert "nvidia.com/gpu" not in server["resources"].get("limits", {})
    assert server["image"].rsplit(":", 1)[0].endswith("server-cpu")


def test_custom_metric_hpa_scales_on_server_load() -> None:
    hpa = _kind(render("overlays/gpu-custom-metrics"), "HorizontalPodAutoscaler")
    names = {m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"}
    assert "batchwise_inflight_requests" in names
    adapter = yaml.safe_load((DEPLOY / "k8s/components/hpa-custom-metrics/prometheus-adapter-values.yaml").read_text())
    assert names <= {rule["name"]["as"] for rule in adapter["rules"]["custom"]}


def test_trainer_and_servers_share_the_model_repository() -> None:
    (pvc,) = [d for d in render("storage") if d["kind"] == "PersistentVolumeClaim"]
    assert "ReadWriteMany" in pvc["spec"]["accessModes"]
    for kustomization in (*SERVER_OVERLAYS, "training"):
        workload = next(d for d in render(kustomization) if d["kind"] in ("Deployment", "Job"))
        claims = [v["persistentVolumeClaim"]["claimName"] for v in workload["spec"]["template"]["spec"]["volumes"]
                  if "persistentVolumeClaim" in v]  # fmt: skip
        assert claims == [pvc["metadata"]["name"]], kustomization


def _command_line(container: dict) -> str:
    return " ".join([*container["command"], *container.get("args", [])])


def test_readme_documents_the_deployed_commands() -> None:
    readme = (DEPLOY / "README.md").read_text()
    job = _kind(render("training"), "Job")
    commands = {_command_line(_server(render(k))) for k in SERVER_OVERLAYS}
    commands.add(_command_line(job["spec"]["template"]["spec"]["containers"][0]))
    for command in commands:
        assert command in readme, f"deploy/README.md does not show the deployed command: {command}"


# ---- the cross-checks catch broken manifests (each breaks one thing on purpose) ----


def _set_env(docs: list[dict], name: str, value: str) -> None:
    env = [v for v in _server(docs)["env"] if v["name"] != name]
    _server(docs)["env"] = [*env, {"name": name, "value": value}]


def _port(docs: list[dict], name: str) -> dict:
    return next(p for p in _server(docs)["ports"] if p["name"] == name)


BREAKAGES = {
    "probe-port-differs-from-container-port": (
        lambda d: _server(d)["readinessProbe"]["grpc"].update(port=8501), "readinessProbe port 8501"),
    "liveness-probe-not-grpc": (
        lambda d: _server(d).update(livenessProbe={"tcpSocket": {"port": 8500}}), "not a native gRPC probe"),
    "unknown-env-var": (
        lambda d: _set_env(d, "BATCHWISE_BATCHING__MAX_BATCH_SIZ", "8"), "unknown setting 'batching.max_batch_siz'"),
    "unknown-env-section": (
        lambda d: _set_env(d, "BATCHWISE_BATCHER__MAX_BATCH_SIZE", "8"), "unknown setting 'batcher'"),
    "invalid-env-value": (lambda d: _set_env(d, "BATCHWISE_RUNTIME__VARIANT", "int4"), "rejects its settings"),
    "server-binds-loopback": (lambda d: _set_env(d, "BATCHWISE_SERVER__HOST", "127.0.0.1"), "not loopback"),
    "server-port-moved": (lambda d: _set_env(d, "BATCHWISE_SERVER__PORT", "9000"), "server.port 9000"),
    "unknown-cli-flag": (
        lambda d: _server(d)["args"].extend(["--batching.max-batch-sise", "8"]),
        "unknown setting 'batching.max_batch_sise' (command-line flag"),
    "config-file-not-mounted": (
        lambda d: _server(d).update(args=["--config-file", "/etc/other/server.toml"]), "not inside any ConfigMap"),
    "service-target-port": (
        lambda d: _kind(d, "Service")["spec"]["ports"][0].update(targetPort="grpc-web"), "targetPort 'grpc-web'"),
    "metrics-container-port": (lambda d: _port(d, "metrics").update(containerPort=9090), "metrics.port 8502"),
    "http-container-port": (lambda d: _port(d, "http").update(containerPort=8080), "http.port 8501"),
    "http-binds-loopback": (lambda d: _set_env(d, "BATCHWISE_HTTP__HOST", "127.0.0.1"), "http.host is 127.0.0.1"),
    "grace-too-short": (
        lambda d: _deployment(d)["spec"]["template"]["spec"].update(terminationGracePeriodSeconds=25),
        "terminationGracePeriodSeconds 25"),
    "no-prestop": (lambda d: _server(d).pop("lifecycle"), "no preStop delay"),
    "models-writable": (
        lambda d: next(m for m in _server(d)["volumeMounts"] if m["name"] == "models").update(readOnly=False),
        "readOnly"),
    "podmonitor-selects-nothing": (
        lambda d: _kind(d, "PodMonitor")["spec"]["selector"]["matchLabels"].update({"batchwise.io/node-kind": "tpu"}),
        "matches no pod template"),
    "podmonitor-misspelled-key": (
        lambda d: _kind(d, "PodMonitor")["spec"].update(podMetricEndpoints=[]), "unknown spec key"),
    "pdb-selects-nothing": (
        lambda d: _kind(d, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"].update(app="other"),
        "matches no pod template"),
    "hpa-targets-nothing": (
        lambda d: _kind(d, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"].update(name="batchwise-server"),
        "is not in the manifests"),
    "runs-privileged": (
        lambda d: _server(d)["securityContext"].update(allowPrivilegeEscalation=True), "drop ALL capabilities"),
}  # fmt: skip


@pytest.mark.parametrize("breakage", BREAKAGES)
def test_cross_check_catches_a_broken_server_manifest(breakage: str) -> None:
    docs = render("overlays/gpu")
    breaker, expected = BREAKAGES[breakage]
    breaker(docs)
    problems = manifest_problems(docs)
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize(
    ("breaker", "expected"),
    [
        pytest.param(lambda job: job["spec"].update(completions=3, parallelism=3), "TF_CONFIG workers", id="workers"),
        pytest.param(lambda job: job["spec"]["template"]["spec"].update(subdomain="x"), "headless", id="subdomain"),
        pytest.param(lambda job: job["spec"].pop("completionMode"), "Indexed", id="not-indexed"),
    ],
)
def test_cross_check_catches_a_broken_training_job(breaker: collections.abc.Callable, expected: str) -> None:
    docs = render("training")
    breaker(_kind(docs, "Job"))
    problems = manifest_problems(docs)
    assert any(expected in p for p in problems), problems


# ---- TLS: probes on the plaintext health-only port ----


def test_mtls_overlay_probes_the_plaintext_health_port() -> None:
    docs = render("overlays/cpu-mtls")
    server, settings = _server(docs), _settings(docs)
    assert settings.security.tls_cert_file is not None and settings.security.tls_client_ca_file is not None
    assert settings.server.health_port == _port(docs, "health")["containerPort"] != settings.server.port
    assert {server[p]["grpc"]["port"] for p in ("startupProbe", "readinessProbe", "livenessProbe")} == {
        settings.server.health_port
    }
    assert settings.server.health_port not in {p["port"] for p in _kind(docs, "Service")["spec"]["ports"]}
    mounts = {m["mountPath"]: m["name"] for m in server["volumeMounts"]}
    volumes = {v["name"]: v for v in _deployment(docs)["spec"]["template"]["spec"]["volumes"]}
    assert volumes[mounts[str(settings.security.tls_cert_file.parent)]]["secret"]["secretName"] == "batchwise-tls"


def test_plain_overlays_serve_rest_and_keep_probes_on_grpc() -> None:
    for overlay in ("overlays/gpu", "overlays/cpu"):
        docs = render(overlay)
        assert _port(docs, "http")["containerPort"] == 8501
        assert "http" in {p["targetPort"] for p in _kind(docs, "Service")["spec"]["ports"]}
        assert _settings(docs).server.health_port is None
        assert _server(docs)["readinessProbe"]["grpc"]["port"] == 8500


def _drop_env(docs: list[dict], name: str) -> None:
    _server(docs)["env"] = [v for v in _server(docs)["env"] if v["name"] != name]


TLS_BREAKAGES = {
    "tls-probe-on-api-port": (
        "overlays/cpu-mtls", lambda d: _server(d)["readinessProbe"]["grpc"].update(port=8500),
        "readinessProbe port 8500 != plaintext health port 8503"),
    "tls-without-health-port": (
        "overlays/cpu-mtls", lambda d: _drop_env(d, "BATCHWISE_SERVER__HEALTH_PORT"), "health_port is unset"),
    "tls-on-plain-overlay": (
        "overlays/gpu", lambda d: (_set_env(d, "BATCHWISE_SECURITY__TLS_CERT_FILE", "/t/c.pem"),
                                   _set_env(d, "BATCHWISE_SECURITY__TLS_KEY_FILE", "/t/k.pem")),
        "kubelet's plaintext gRPC probes cannot connect"),
    "health-port-not-a-container-port": (
        "overlays/cpu-mtls", lambda d: _port(d, "health").update(containerPort=9503),
        "server.health_port 8503 is not a containerPort"),
}  # fmt: skip


@pytest.mark.parametrize("breakage", TLS_BREAKAGES)
def test_cross_check_catches_probes_that_cannot_reach_a_tls_server(breakage: str) -> None:
    overlay, breaker, expected = TLS_BREAKAGES[breakage]
    docs = render(overlay)
    breaker(docs)
    problems = manifest_problems(docs)
    assert any(expected in p for p in problems), problems


HTTP_READINESS = {"httpGet": {"path": "/v2/health/ready", "port": "http"}, "periodSeconds": 5}


def test_documented_http_readiness_probe_passes_the_cross_checks() -> None:
    readme = (DEPLOY / "README.md").read_text()
    assert "path: /v2/health/ready" in readme and "port: http" in readme
    docs = render("overlays/cpu")
    _server(docs)["readinessProbe"] = HTTP_READINESS
    assert manifest_problems(docs) == []


@pytest.mark.parametrize(
    ("breaker", "expected"),
    [
        pytest.param(lambda p: p["httpGet"].update(port=8502), "not the HTTP port 8501", id="metrics-port"),
        pytest.param(lambda p: p["httpGet"].update(path="/v1/models/m"), "is not '/v2/health/ready'", id="path"),
        pytest.param(lambda p: p["httpGet"].update(scheme="HTTPS"), "HTTPS exactly when TLS is on", id="scheme"),
    ],
)
def test_cross_check_catches_a_broken_http_readiness_probe(breaker, expected) -> None:
    docs = render("overlays/cpu")
    probe = {**HTTP_READINESS, "httpGet": dict(HTTP_READINESS["httpGet"])}
    breaker(probe)
    _server(docs)["readinessProbe"] = probe
    problems = manifest_problems(docs)
    assert any(expected in p for p in problems), problems


def test_http_readiness_cannot_pass_mtls() -> None:
    docs = render("overlays/cpu-mtls")
    _server(docs)["readinessProbe"] = {"httpGet": {**HTTP_READINESS["httpGet"], "scheme": "HTTPS"}}
    assert any("cannot pass mTLS" in p for p in manifest_problems(docs))
