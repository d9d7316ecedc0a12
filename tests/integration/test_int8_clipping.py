"""An int8 variant fed rows outside its input quantization range: the values it clips are counted and logged."""

from __future__ import annotations

import logging
import shutil

import numpy as np
from ai_edge_litert.interpreter import Interpreter
from prometheus_client import CollectorRegistry

from service.client import BatchwiseClient
from tests.support.litert_models import build_litert_models
from tests.support.server import ServerThread, server_settings

CLIPPED = "batchwise_int8_clipped_input_values_total"


def _input_range(tflite_path) -> tuple[float, float]:
    """The floats the int8 input tensor can represent, read from the flatbuffer with LiteRT itself."""
    (detail,) = Interpreter(model_path=str(tflite_path)).get_input_details()
    scale, zero_point = detail["quantization"]
    return (-128 - zero_point) * scale, (127 - zero_point) * scale


def test_clipped_int8_inputs_are_counted_per_model_version_and_input_and_logged_once(tmp_path, caplog):
    iris = build_litert_models().iris
    shutil.copytree(iris.version_dir, tmp_path / "iris" / "1")
    low, high = _input_range(iris.tflite("int8"))
    in_range = np.clip(iris.x_test[:2], low, high).astype(np.float32)
    out_of_range = in_range.copy()
    out_of_range[0, 0] = high + 1.0  # 1 clipped value in row 0
    out_of_range[1, [1, 3]] = [low - 1.0, high * 3 + 1.0]  # 2 in row 1
    registry = CollectorRegistry()
    settings = server_settings(tmp_path, metrics={"enabled": True, "port": 0}, runtime={"variant": "int8"},
                               batching={"enabled": False})  # fmt: skip
    server = ServerThread(settings, registry=registry).start()
    labels = {"model": "iris", "version": "1", "input": "features"}
    try:
        with caplog.at_level(logging.WARNING), BatchwiseClient(server.target) as client:
            assert client.predict("iris", {"features": in_range})[0] == 1
            assert registry.get_sample_value(CLIPPED, labels) is None  # warm-up, guard and in-range rows clip nothing
            for _ in range(2):
                client.predict("iris", {"features": out_of_range})
        assert registry.get_sample_value(CLIPPED, labels) == 6
    finally:
        server.stop()
    warnings = [r.getMessage() for r in caplog.records if "int8 quantization range" in r.getMessage()]
    assert len(warnings) == 1 and "model iris version 1 variant int8: 3 value(s) of input 'features'" in warnings[0]
