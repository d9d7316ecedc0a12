"""TFLite conversion of a SavedModel's serving signature: float32, float16, dynamic-range and full-int8."""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf

from models.export import SIGNATURE

# interface = dtype family of the variant's floating-point inputs/outputs as the server sees them.
INTERFACES = {"float32": "float", "float16": "float", "dynamic": "float", "int8": "int8"}
REPRESENTATIVE_ROWS = 200


def representative_rows(x_train: np.ndarray, seed: int, rows: int = REPRESENTATIVE_ROWS) -> np.ndarray:
    """A seeded random sample of training inputs used to calibrate full-integer quantization."""
    rng = np.random.default_rng(seed)
    return x_train[rng.permutation(len(x_train))[:rows]]


def convert(saved_model_dir: Path, variant: str, input_name: str | None,
            calibration: np.ndarray | Mapping[str, np.ndarray] | None,
            signature_keys: Sequence[str] = (SIGNATURE,)) -> bytes:
    """Convert the `serving_default` signature of saved_model_dir (or `signature_keys`) to a TFLite flatbuffer.

    variant: float32 (no optimization), float16 (float16 weights), dynamic (int8 weights, float
    interface), int8 (full-integer, calibrated on `calibration` rows, int8 input/output for float
    tensors; integer inputs such as token ids keep their type). `calibration` is one array for the
    input `input_name`, or arrays keyed by input name (then input_name is unused). Returns the model bytes; raises
    whatever the converter raises when an op cannot be converted.
    """
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir), signature_keys=list(signature_keys))
    if variant == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif variant == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif variant == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        rows = calibration if isinstance(calibration, Mapping) else {input_name: calibration}
        converter.representative_dataset = lambda: _calibration_feed(rows)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    elif variant != "float32":
        raise ValueError(f"unknown TFLite variant {variant!r}")
    with warnings.catch_warnings():
        # The calibrator uses the deprecated tf.lite.Interpreter internally; that warning is not ours to fix.
        warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated.*")
        return converter.convert()


def _calibration_feed(rows: Mapping[str, np.ndarray]) -> Iterator[dict[str, np.ndarray]]:
    for index in range(len(next(iter(rows.values())))):
        yield {name: value[index : index + 1] for name, value in rows.items()}
