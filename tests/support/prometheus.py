"""The real Prometheus and promtool binaries (Debian package `prometheus`): find them, run, query."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from loadtests.servers import ROOT, free_port

DEPLOY = ROOT / "deploy"
RULE_FILES = sorted((DEPLOY / "prometheus" / "rules").glob("*.yml"))


def require_binary(name: str) -> str:
    """The path of `name`. Absent: skip locally, but fail in CI (CI=true), where .ci/run installs it."""
    path = shutil.which(name)
    if path is None:
        reason = f"{name} is not installed (apt-get install prometheus)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI must run this test")
        pytest.skip(reason)
    return path


class PrometheusServer:
    """A Prometheus on a free loopback port scraping `target` every second, with our rule files.

    Storage lives under `workdir`. Use as a context manager; `query` returns the API's data.
    """

    def __init__(self, workdir: Path, target: str) -> None:
        self.binary = require_binary("prometheus")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._workdir = workdir
        self._config = workdir / "prometheus.yml"
        rules = "\n".join(f"  - {path}" for path in RULE_FILES)
        self._config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            f"rule_files:\n{rules}\n"
            "scrape_configs:\n  - job_name: batchwise\n"
            f"    static_configs:\n      - targets: ['{target}']\n"
        )
        self._proc: subprocess.Popen | None = None

    def __enter__(self) -> PrometheusServer:
        self._log = (self._workdir / "prometheus.log").open("w")
        self._proc = subprocess.Popen(
            [self.binary, f"--config.file={self._config}", f"--storage.tsdb.path={self._workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self._log, stderr=subprocess.STDOUT,
        )
        assert self.wait_until(self._ready), "Prometheus did not become ready"
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self._proc is not None
        self._proc.terminate()
        try:
            self._proc.wait(15)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(5)
        self._log.close()

    def _ready(self) -> bool:
        assert self._proc is not None
        if self._proc.poll() is not None:
            raise RuntimeError((self._workdir / "prometheus.log").read_text())
        try:
            return urllib.request.urlopen(f"{self.url}/-/ready", timeout=2).status == 200
        except (urllib.error.URLError, ConnectionError):
            return False

    def api(self, path: str, **params: str):
        """GET /api/v1/<path>; returns `data`, raises AssertionError if the status is not success."""
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=10) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, promql: str) -> list[dict]:
        """An instant query's result vector."""
        return self.api("query", query=promql)["result"]

    @staticmethod
    def wait_until(predicate, timeout_s: float = 90.0) -> bool:
        """Poll `predicate` every 0.5 s until it is true (True) or timeout_s passes (False)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.5)
        return False
