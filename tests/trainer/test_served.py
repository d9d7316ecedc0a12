"""A version the trainer publishes, served by the real server over gRPC, answers as the trainer's model does."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from service.client import BatchwiseClient
from tests.support.server import ServerThread, server_settings


@pytest.mark.slow
def test_served_savedmodel_equals_trainers_predictions(digits_run, tmp_path):
    version_dir = digits_run.path
    repo = tmp_path / "repo"
    shutil.copytree(version_dir, repo / "digits" / version_dir.name)
    pixels = np.random.default_rng(3).uniform(0, 1, size=(12, 8, 8, 1)).astype(np.float32)
    expected = digits_run.model.predict(pixels, verbose=0)

    thread = ServerThread(server_settings(repo, runtime={"variant": "savedmodel"})).start()
    try:
        with BatchwiseClient(thread.target) as client:
            version, outputs = client.predict("digits", {"pixels": pixels})
            _v, int8 = client.predict("digits", {"pixels": pixels}, variant="int8")
    finally:
        thread.stop()
    assert version == int(version_dir.name)
    np.testing.assert_allclose(outputs["probabilities"], expected, rtol=1e-5, atol=1e-6)
    # The quantized variant, served through the same API, picks the same classes.
    assert np.mean(int8["probabilities"].argmax(1) == expected.argmax(1)) >= 0.9
