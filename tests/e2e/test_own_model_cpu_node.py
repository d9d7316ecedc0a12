"""Bring your own model to a CPU node: a plain tf.keras two-input model, published, served without TensorFlow."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest

from loadtests.servers import start_server
from models.cli import main as models_main
from service.client import BatchwiseClient
from tests.support import blocked_tf_env
from tests.support.foreign_models import build_two_input


@pytest.mark.slow
def test_published_two_input_model_serves_int8_on_a_cpu_node(tmp_path):
    two = build_two_input(tmp_path)
    repository = tmp_path / "repo"
    with contextlib.redirect_stdout(io.StringIO()):
        code = models_main(
            [
                "publish",
                str(two.path),
                "--repository",
                str(repository),
                "--model-name",
                "two",
                "--calibration-data",
                str(two.calibration),
                "--quiet",
            ]
        )
    assert code == 0
    card = json.loads((repository / "two" / "1" / "model_card.json").read_text())
    assert card["variants"]["int8"]["published"] is True
    tolerance = card["quality_gate"]["max_abs_error"]

    log = tmp_path / "server.log"
    server = start_server(
        ["--repository.path", str(repository), "--repository.poll-interval-s", "0"], env=blocked_tf_env(), log_path=log
    )
    try:
        server.wait_serving()
        with BatchwiseClient(server.target) as client:
            version, outputs = client.predict("two", two.rows)
    finally:
        assert server.stop() == 0, server.log_tail(3000)
    assert version == 1
    assert "serves variant int8" in log.read_text()
    for name, expected in two.expected.items():
        assert outputs[name].dtype == np.float32 and outputs[name].shape == expected.shape
        assert np.max(np.abs(outputs[name] - expected)) <= tolerance, name
