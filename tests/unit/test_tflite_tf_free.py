"""The LiteRT path (devices, variants, TFLiteBackend) works in a process where importing tensorflow fails."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.support import blocked_tf_env
from tests.support.litert_models import build_litert_models

REPO_ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import json, sys
from pathlib import Path
import numpy as np
from contract.card import load_card
from service.repository.variants import check_consistency, choose_variants, discover_variants
from service.runtime import devices
from service.runtime.tflite import TFLiteBackend

try:
    import tensorflow  # noqa: F401
    sys.exit("tensorflow imported despite the blocker")
except ImportError:
    pass
version_dir = Path(sys.argv[1])
card = load_card(version_dir)
available = discover_variants(version_dir, card)
tf_available, gpu = devices.is_tensorflow_available(), devices.gpu_visible()
order = choose_variants("auto", available, gpu_visible=gpu, tf_available=tf_available)
backend = TFLiteBackend(available[order[0]], variant=order[0], num_threads=1, pool_size=2)
backend.load()
check_consistency(backend, card, atol=0.05, min_top1_agreement=0.9)
rows = np.asarray(card.samples.inputs["features"], dtype=np.float32)
out = backend.predict("serving_default", {"features": rows})["probabilities"]
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tf_keras"))
print(json.dumps({"order": order, "tf_available": tf_available, "gpu": gpu, "shape": out.shape, "loaded": loaded}))
"""


def test_cpu_path_never_imports_tensorflow():
    version_dir = build_litert_models().iris.version_dir
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SCRIPT), str(version_dir)],
        env=blocked_tf_env(),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {
        "order": ["int8", "dynamic", "float16", "float32"],  # savedmodel is skipped without TensorFlow
        "tf_available": False,
        "gpu": False,
        "shape": [4, 3],
        "loaded": [],
    }
