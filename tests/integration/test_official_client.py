"""TF Serving's own Python client, in its own process, gets the SavedModel's answers from our server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).with_name("official_client.py")


@pytest.mark.slow
def test_official_tf_serving_client_interoperates(server, model_repo):
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), server.target, "mlp", str(model_repo / "mlp" / "1")],
        capture_output=True, text=True, timeout=240, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(result["served"], result["expected"], rtol=1e-5, atol=1e-6)
    assert result["version"] == 1
    assert result["inputs"] == {"features": [-1, 4]}
    assert result["outputs"] == ["probabilities"]
    assert result["input_dtype"] == "float32"
