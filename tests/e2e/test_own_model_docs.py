"""docs/own-model.md runs as written: its model snippet, then its three commands, the server TensorFlow-free."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from loadtests.servers import start_server
from tests.support import blocked_tf_env

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "own-model.md"
BIN = Path(sys.executable).parent


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), flags=re.DOTALL)


def run(command: list[str], cwd: Path, env: dict | None = None) -> str:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, f"{command}: {result.stderr[-2000:]}"
    return result.stdout


@pytest.mark.slow
def test_serve_your_own_model_commands_run_as_written(tmp_path):
    publish, serve, predict = blocks("bash")[0].strip().splitlines()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    run([sys.executable, "-c", blocks("python")[0]], tmp_path, env)
    run([str(BIN / word) if i == 0 else word for i, word in enumerate(shlex.split(publish))], tmp_path, env)
    assert (tmp_path / "repo" / "my-model" / "1" / "tflite" / "int8.tflite").is_file()

    program, *args = shlex.split(serve.removesuffix("&").strip())
    port_index = args.index("--server.port")
    del args[port_index : port_index + 2]  # start_server picks a free port
    args = [str(tmp_path / "repo") if arg == "./repo" else arg for arg in args]  # the server runs from ROOT
    server = start_server(args, env=blocked_tf_env(), entry=(str(BIN / program),), log_path=tmp_path / "log")
    try:
        server.wait_serving()
        client = [str(BIN / word) if i == 0 else word for i, word in enumerate(shlex.split(predict))]
        printed = run([*client, "--target", server.target], tmp_path, blocked_tf_env())
    finally:
        assert server.stop() == 0, server.log_tail(3000)
    outputs = json.loads(printed)["outputs"]
    assert outputs["probs"]["shape"] == [1, 3] and abs(sum(outputs["probs"]["value"][0]) - 1.0) < 0.05
    assert "serves variant int8" in (tmp_path / "log").read_text()
