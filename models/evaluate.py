"""Measure artifacts the way the server will run them: test-split metric, single-row latency, file sizes."""

from __future__ import annotations

import gzip
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from models.export import SIGNATURE
from models.stale import WRITER_FILE

EVAL_CHUNK_ROWS = 256
WARMUP_CALLS = 20
TIMED_CALLS = 200
LATENCY_METHOD = (f"median of {TIMED_CALLS} single-row calls after {WARMUP_CALLS} warm-up calls, "
                  "one CPU thread for LiteRT, in the trainer process")


class LiteRTModel:
    """A TFLite flatbuffer run through LiteRT's `serving_default` signature runner.

    Takes and returns float (or integer id) numpy arrays; for an int8 interface it quantizes the
    inputs and dequantizes the outputs with the tensors' own scale and zero point, as the server must.
    """

    def __init__(self, model_bytes: bytes, threads: int = 1) -> None:
        self._interpreter = Interpreter(model_content=model_bytes, num_threads=threads)
        self._runner = self._interpreter.get_signature_runner(SIGNATURE)
        self.inputs = self._runner.get_input_details()
        self.outputs = self._runner.get_output_details()

    def io_details(self) -> dict:
        """Per-tensor dtype and quantization (scale, zero_point) for the model card."""
        def describe(details: dict) -> dict:
            scale, zero_point = details["quantization"]
            entry = {"dtype": np.dtype(details["dtype"]).name}
            if scale:
                entry.update(scale=float(scale), zero_point=int(zero_point))
            return entry

        return {"inputs": {name: describe(d) for name, d in self.inputs.items()},
                "outputs": {name: describe(d) for name, d in self.outputs.items()}}

    def quantize_inputs(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Convert inputs to the dtypes the flatbuffer expects (quantizing float -> int8)."""
        feed = {}
        for name, value in inputs.items():
            details = self.inputs[name]
            scale, zero_point = details["quantization"]
            array = np.asarray(value)
            if scale and array.dtype.kind == "f":
                info = np.iinfo(details["dtype"])
                array = np.clip(np.round(array / scale + zero_point), info.min, info.max)
            feed[name] = array.astype(details["dtype"])
        return feed

    def run_quantized(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run on already-converted inputs; outputs stay in the flatbuffer's dtypes."""
        return self._runner(**feed)

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one batch: float inputs in, float outputs out (dequantized when needed)."""
        raw = self.run_quantized(self.quantize_inputs(inputs))
        result = {}
        for name, value in raw.items():
            scale, zero_point = self.outputs[name]["quantization"]
            result[name] = (value.astype(np.float32) - zero_point) * scale if scale else value
        return result


def predict_in_chunks(predict: Callable[[np.ndarray], np.ndarray], x: np.ndarray) -> np.ndarray:
    """Concatenate predict(chunk) over chunks of EVAL_CHUNK_ROWS rows."""
    return np.concatenate([predict(x[i : i + EVAL_CHUNK_ROWS]) for i in range(0, len(x), EVAL_CHUNK_ROWS)])


def latency_ms(call: Callable[[], object]) -> float:
    """Median wall-clock milliseconds of call() after warm-up (see LATENCY_METHOD)."""
    for _ in range(WARMUP_CALLS):
        call()
    timings_ms = []
    for _ in range(TIMED_CALLS):
        started = time.perf_counter()
        call()
        timings_ms.append((time.perf_counter() - started) * 1000.0)
    return statistics.median(timings_ms)


def litert_latency_ms(model: LiteRTModel, one_row: dict[str, np.ndarray]) -> float:
    """Single-row latency of a LiteRT model, timing the interpreter only (input already converted)."""
    feed = model.quantize_inputs(one_row)
    return latency_ms(lambda: model.run_quantized(feed))


def savedmodel_predictor(path: Path, input_name: str, output_name: str) -> Callable[[np.ndarray], np.ndarray]:
    """Load a SavedModel and return x -> outputs through its serving signature."""
    import tensorflow as tf

    signature = tf.saved_model.load(str(path)).signatures[SIGNATURE]

    def predict(x: np.ndarray) -> np.ndarray:
        return signature(**{input_name: tf.constant(x)})[output_name].numpy()

    return predict


def gzip_size_bytes(content: bytes) -> int:
    """Length of content compressed with gzip at level 9 (where pruning's zeros pay off)."""
    return len(gzip.compress(content, compresslevel=9, mtime=0))


def file_sizes(paths: list[Path]) -> tuple[int, int]:
    """(total bytes, total gzip-compressed bytes) of the files, each compressed on its own."""
    contents = [path.read_bytes() for path in paths]
    return sum(len(c) for c in contents), sum(gzip_size_bytes(c) for c in contents)


def savedmodel_files(root: Path) -> list[Path]:
    """The SavedModel's own files under a version folder (saved_model.pb, variables/, assets/...)."""
    return sorted(p for p in root.rglob("*") if p.is_file() and p.relative_to(root).parts[0] != "tflite"
                  and p.name not in {"model_card.json", WRITER_FILE})
