"""Cross-checks between rendered Kubernetes objects: selectors, ports, references, the training Job.

`manifest_problems(docs)` runs them all on one rendered kustomization and returns a list of problems.
PodMonitor is a CRD that kubernetes-validate has no schema for, so `podmonitor_problems` checks
its structure here: allowed keys, a selector that matches our pods, a named metrics port.
"""

from __future__ import annotations

import json
import re

from server_checks import SERVER_COMMANDS, resolve_settings, server_container_problems

# CRDs we ship, checked structurally below instead of by kubernetes-validate.
CRD_KINDS = {("monitoring.coreos.com/v1", "PodMonitor")}
WORKLOAD_KINDS = ("Deployment", "Job", "StatefulSet", "DaemonSet")
TRAINER_COMMANDS = (["python", "-m", "models"], ["batchwise-train"])
DURATION = re.compile(r"^([0-9]+(ms|s|m|h))+$")
PODMONITOR_SPEC_KEYS = {
    "selector", "podMetricsEndpoints", "namespaceSelector", "jobLabel", "podTargetLabels",
    "sampleLimit", "targetLimit", "labelLimit", "attachMetadata",
}  # fmt: skip
PODMONITOR_ENDPOINT_KEYS = {
    "port", "portNumber", "path", "interval", "scrapeTimeout", "scheme", "honorLabels",
    "honorTimestamps", "relabelings", "metricRelabelings", "params", "enableHttp2",
}  # fmt: skip


def is_crd(doc: dict) -> bool:
    """True for the custom resources we ship (validated by `podmonitor_problems`, not kubernetes-validate)."""
    return (doc.get("apiVersion"), doc.get("kind")) in CRD_KINDS


def _name(doc: dict) -> str:
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


def _workloads(docs: list[dict]) -> list[dict]:
    return [d for d in docs if d.get("kind") in WORKLOAD_KINDS]


def _pod_labels(workload: dict) -> dict[str, str]:
    return workload["spec"]["template"].get("metadata", {}).get("labels", {}) or {}


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def _selected(selector: dict[str, str], docs: list[dict]) -> list[dict]:
    return [w for w in _workloads(docs) if _selects(selector, _pod_labels(w))]


def _containers(workload: dict) -> list[dict]:
    return workload["spec"]["template"]["spec"]["containers"]


def _container_ports(workload: dict) -> list[dict]:
    return [p for c in _containers(workload) for p in c.get("ports", [])]


def service_problems(service: dict, docs: list[dict]) -> list[str]:
    """A Service must select some pod here, and every targetPort must be one of those pods' ports."""
    selector = service["spec"].get("selector", {})
    targets = _selected(selector, docs)
    if not targets:
        return [f"{_name(service)}: selector {selector} matches no pod template"]
    problems = []
    for port in service["spec"].get("ports", []):
        target = port.get("targetPort", port["port"])
        for workload in targets:
            known = {p.get("name") for p in _container_ports(workload)} | {
                p["containerPort"] for p in _container_ports(workload)
            }
            if target not in known:
                problems.append(f"{_name(service)}: targetPort {target!r} is not a port of {_name(workload)}")
    return problems


def pdb_problems(pdb: dict, docs: list[dict]) -> list[str]:
    """A PodDisruptionBudget must cover a workload rendered with it."""
    selector = pdb["spec"].get("selector", {}).get("matchLabels", {})
    return [] if _selected(selector, docs) else [f"{_name(pdb)}: selector {selector} matches no pod template"]


def hpa_problems(hpa: dict, docs: list[dict]) -> list[str]:
    """An HPA must target a Deployment here; CPU utilization needs CPU requests on its containers."""
    ref = hpa["spec"]["scaleTargetRef"]
    target = next((d for d in docs if d.get("kind") == ref["kind"] and d["metadata"]["name"] == ref["name"]), None)
    if target is None:
        return [f"{_name(hpa)}: scaleTargetRef {ref['kind']}/{ref['name']} is not in the manifests"]
    uses_cpu = any(m.get("resource", {}).get("name") == "cpu" for m in hpa["spec"].get("metrics", []))
    missing = [c["name"] for c in _containers(target) if "cpu" not in c.get("resources", {}).get("requests", {})]
    if uses_cpu and missing:
        return [f"{_name(hpa)}: CPU utilization needs CPU requests, missing on containers {missing}"]
    return []


def _endpoint_problems(monitor: dict, endpoint: dict, targets: list[dict]) -> list[str]:
    problems = [f"{_name(monitor)}: unknown endpoint key {k!r}" for k in set(endpoint) - PODMONITOR_ENDPOINT_KEYS]
    if endpoint.get("path", "/metrics") != "/metrics":
        problems.append(f"{_name(monitor)}: path {endpoint['path']} is not /metrics")
    for key in ("interval", "scrapeTimeout"):
        if key in endpoint and not DURATION.match(str(endpoint[key])):
            problems.append(f"{_name(monitor)}: {key} {endpoint[key]!r} is not a Prometheus duration")
    for workload in targets:
        named = {p.get("name"): p["containerPort"] for p in _container_ports(workload)}
        if endpoint.get("port") not in named:
            problems.append(f"{_name(monitor)}: port {endpoint.get('port')!r} is not a named port of {_name(workload)}")
    return problems


def podmonitor_problems(monitor: dict, docs: list[dict]) -> list[str]:
    """Structural check of the PodMonitor CRD: keys, a selector matching our pods, endpoints on named ports."""
    extra_keys = set(monitor) - {"apiVersion", "kind", "metadata", "spec"}
    problems = [f"{_name(monitor)}: unknown top-level key {k!r}" for k in extra_keys]
    spec = monitor.get("spec")
    if not isinstance(spec, dict) or not isinstance(monitor.get("metadata", {}).get("name"), str):
        return [*problems, f"{_name(monitor)}: needs metadata.name and a spec mapping"]
    problems += [f"{_name(monitor)}: unknown spec key {k!r}" for k in set(spec) - PODMONITOR_SPEC_KEYS]
    selector = spec.get("selector", {}).get("matchLabels", {})
    targets = _selected(selector, docs)
    if not targets:
        problems.append(f"{_name(monitor)}: selector {selector} matches no pod template")
    endpoints = spec.get("podMetricsEndpoints") or []
    if not endpoints:
        problems.append(f"{_name(monitor)}: no podMetricsEndpoints")
    for endpoint in endpoints:
        problems += _endpoint_problems(monitor, endpoint, targets)
    return problems


def _metrics_port_problems(workload: dict, docs: list[dict]) -> list[str]:
    """The port a PodMonitor scrapes must be the port the server's metrics endpoint binds."""
    problems = []
    pod_spec = workload["spec"]["template"]["spec"]
    for monitor in (d for d in docs if d.get("kind") == "PodMonitor"):
        if not _selects(monitor["spec"].get("selector", {}).get("matchLabels", {}), _pod_labels(workload)):
            continue
        for container in (c for c in _containers(workload) if c.get("command") in SERVER_COMMANDS):
            settings, _ = resolve_settings(pod_spec, container, docs)
            named = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
            for endpoint in monitor["spec"].get("podMetricsEndpoints", []):
                port = named.get(endpoint.get("port"))
                if settings is not None and port is not None and port != settings.metrics.port:
                    problems.append(f"{_name(monitor)} scrapes port {port}, metrics bind {settings.metrics.port}")
    return problems


def _tf_config(container: dict) -> dict | None:
    env = {v["name"]: v for v in container.get("env", [])}
    if "TF_CONFIG" not in env:
        return None
    return json.loads(env["TF_CONFIG"]["value"].replace("$(WORKER_INDEX)", "0"))


def training_job_problems(job: dict, docs: list[dict]) -> list[str]:
    """Multi-worker Job: Indexed, TF_CONFIG lists one stable DNS name per worker on the workers' port."""
    spec, pod = job["spec"], job["spec"]["template"]["spec"]
    name, subdomain = job["metadata"]["name"], pod.get("subdomain")
    problems = []
    if spec.get("completionMode") != "Indexed" or spec.get("completions") != spec.get("parallelism"):
        problems.append(f"{_name(job)}: needs completionMode Indexed and completions == parallelism")
    service = next((d for d in docs if d.get("kind") == "Service" and d["metadata"]["name"] == subdomain), None)
    if service is None or service["spec"].get("clusterIP") != "None":
        problems.append(f"{_name(job)}: subdomain {subdomain!r} is not a headless Service here")
    elif not _selects(service["spec"].get("selector", {}), _pod_labels(job)):
        problems.append(f"{_name(job)}: Service {subdomain} does not select the Job's pods")
    for container in _containers(job):
        config = _tf_config(container)
        if container.get("command") not in TRAINER_COMMANDS or config is None:
            problems.append(f"{_name(job)}: container {container['name']} is not a trainer with TF_CONFIG")
            continue
        ports = {p["containerPort"] for p in container.get("ports", [])}
        expected = [f"{name}-{i}.{subdomain}:{port}" for i in range(spec.get("completions", 1)) for port in ports]
        if config["cluster"].get("worker") != expected:
            problems.append(f"{_name(job)}: TF_CONFIG workers {config['cluster'].get('worker')} != {expected}")
        index_ref = next((v for v in container.get("env", []) if v["name"] == "WORKER_INDEX"), {})
        if "job-completion-index" not in json.dumps(index_ref):
            problems.append(f"{_name(job)}: WORKER_INDEX must come from the job-completion-index annotation")
    return problems


def workload_problems(workload: dict, docs: list[dict]) -> list[str]:
    """Server Deployments get the full server cross-check; every pod must run unprivileged."""
    pod_spec = workload["spec"]["template"]["spec"]
    problems = []
    if not pod_spec.get("securityContext", {}).get("runAsNonRoot"):
        problems.append(f"{_name(workload)}: pod securityContext.runAsNonRoot is not true")
    for container in _containers(workload):
        context = container.get("securityContext", {})
        if context.get("allowPrivilegeEscalation") is not False or "ALL" not in context.get("capabilities", {}).get(
            "drop", []
        ):
            problems.append(f"{_name(workload)}/{container['name']}: must drop ALL capabilities, no escalation")
        if workload["kind"] == "Deployment":
            problems += [f"{_name(workload)}: {p}" for p in server_container_problems(pod_spec, container, docs)]
    if workload["kind"] == "Deployment":
        problems += _metrics_port_problems(workload, docs)
    if workload["kind"] == "Job":
        problems += training_job_problems(workload, docs)
    return problems


CHECKS = {
    "Service": service_problems,
    "PodDisruptionBudget": pdb_problems,
    "HorizontalPodAutoscaler": hpa_problems,
    "PodMonitor": podmonitor_problems,
    **dict.fromkeys(WORKLOAD_KINDS, workload_problems),
}


def manifest_problems(docs: list[dict]) -> list[str]:
    """All cross-checks on one rendered kustomization; an empty list means it passed."""
    return [problem for doc in docs for problem in CHECKS.get(doc.get("kind"), lambda *_: [])(doc, docs)]
