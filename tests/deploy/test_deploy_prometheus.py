"""deploy/prometheus and deploy/grafana: promtool checks and unit tests, and every metric they name exists."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
from prometheus_client import CollectorRegistry

from service.metrics import Metrics
from service.settings import MetricsSettings
from tests.support.prometheus import DEPLOY, RULE_FILES, require_binary

pytestmark = pytest.mark.needs_prometheus
PROMETHEUS = DEPLOY / "prometheus"
# A metric name on its own, not part of a recording rule's level:metric:operation name.
METRIC_NAME = re.compile(r"(?<![\w:])batchwise_\w+(?![\w:])")


def promtool(*args: str) -> None:
    result = subprocess.run([require_binary("promtool"), *args], capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_check_config_and_rules():
    assert len(RULE_FILES) == 2
    promtool("check", "config", str(PROMETHEUS / "prometheus.yml"))
    promtool("check", "rules", *map(str, RULE_FILES))


def test_promtool_rule_unit_tests():
    promtool("test", "rules", *map(str, sorted((PROMETHEUS / "tests").glob("*.yml"))))


def test_rules_and_dashboard_name_only_metrics_we_export():
    registry = CollectorRegistry()
    Metrics(registry, MetricsSettings(), max_batch_rows=8)
    suffixes = {"counter": ("", "_total"), "histogram": ("", "_bucket", "_sum", "_count"), "gauge": ("",)}
    exported = {family.name + suffix for family in registry.collect() for suffix in suffixes[family.type]}
    texts = [path.read_text() for path in RULE_FILES] + [(DEPLOY / "grafana" / "batchwise.json").read_text()]
    named = {name for text in texts for name in METRIC_NAME.findall(text)}
    assert named, "the pattern found no metric names"
    assert named <= exported, sorted(named - exported)
    assert {"batchwise_request_latency_seconds_bucket", "batchwise_queue_rows", "batchwise_rejections_total"} <= named


def test_dashboard_covers_models_and_variants():
    dashboard = json.loads((DEPLOY / "grafana" / "batchwise.json").read_text())
    variables = {var["name"] for var in dashboard["templating"]["list"]}
    assert {"datasource", "model", "variant"} <= variables
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    for family in ("request_latency_seconds", "predict_requests_total", "queue_rows", "batch_size_rows",
                   "rejections_total", "queue_wait_seconds", "compute_seconds", "batch_wait_seconds",
                   "batch_cap_rows", "batches_formed_total"):
        assert any(f"batchwise_{family}" in expr for expr in exprs), family
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
