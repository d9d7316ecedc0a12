"""SavedModel export with a named serving signature, and atomic publishing into the model repository."""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np

from contract.layout import MODEL_NAME_RULE, is_model_name, parse_version
from models.errors import TrainerError
from models.stale import mark_writer, unmark_writer

SIGNATURE = "serving_default"
T = TypeVar("T")


def validate_model_name(name: str) -> str:
    """Return name if it is a valid repository model name, else raise TrainerError."""
    if not is_model_name(name):
        raise TrainerError(f"invalid model name {name!r}: use {MODEL_NAME_RULE}")
    return name


def existing_versions(model_dir: Path) -> list[int]:
    """The published versions (folder names the server reads as versions) under model_dir, sorted."""
    if not model_dir.is_dir():
        return []
    return sorted(v for p in model_dir.iterdir() if p.is_dir() and (v := parse_version(p.name)) is not None)


def choose_version(repository: Path, name: str, requested: int | None) -> int:
    """The requested version, or the next free integer. Raises TrainerError if it is taken or invalid."""
    versions = existing_versions(repository / name)
    if requested is None:
        return (versions[-1] + 1) if versions else 1
    if requested < 1:
        raise TrainerError(f"--version must be a positive integer, got {requested}")
    if requested in versions:
        raise TrainerError(f"{name} version {requested} already exists in {repository}")
    return requested


def publish(repository: Path, name: str, version: int, write: Callable[[Path], T]) -> tuple[Path, T]:
    """Atomically publish a version: write(tmp) fills `<repo>/<name>/.tmp-<version>-<random>/`, then rename.

    Returns (final path, write's result). On any failure, including Ctrl-C, the temporary folder
    (and a model folder this call created) is removed and the exception propagates; a polling
    server never sees a partial version. Raises TrainerError if the version appeared meanwhile.
    """
    model_dir = repository / name
    created_model_dir = not model_dir.exists()
    model_dir.mkdir(parents=True, exist_ok=True)
    tmp = model_dir / f".tmp-{version}-{secrets.token_hex(4)}"
    final = model_dir / str(version)
    try:
        tmp.mkdir()
        mark_writer(tmp)  # lets a later run reclaim the folder if this process is killed (models.stale)
        result = write(tmp)
        if final.exists():
            raise TrainerError(f"{name} version {version} was published by someone else meanwhile")
        unmark_writer(tmp)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if created_model_dir and not any(model_dir.iterdir()):
            model_dir.rmdir()
        raise
    return final, result


def export_savedmodel(model, path: Path, input_name: str, output_name: str, input_dtype: str) -> None:
    """Write model as a SavedModel whose `serving_default` maps {input_name} -> {output_name}.

    The batch dimension is dynamic (None). Uses Keras's ExportArchive, which freezes the weights
    into constants on TFLite conversion (a hand-rolled tf.Module keeps them as resource variables,
    which the TFLite quantizer then cannot touch).
    """
    import keras
    import tensorflow as tf

    spec = tf.TensorSpec([None, *model.input_shape[1:]], tf.as_dtype(input_dtype), name=input_name)

    def serve(inputs):
        return {output_name: model(inputs, training=False)}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(SIGNATURE, serve, input_signature=[spec])
    archive.write_out(str(path), verbose=False)


def check_savedmodel(path: Path, model, input_name: str, output_name: str, samples: np.ndarray) -> dict:
    """Load the SavedModel back and check its signature against the in-process model on samples.

    Returns the card's `signature` section. Raises RuntimeError if names or outputs disagree
    (this is a bug, not user error: nothing is published).
    """
    import tensorflow as tf

    signature = tf.saved_model.load(str(path)).signatures[SIGNATURE]
    inputs = signature.structured_input_signature[1]
    outputs = signature.structured_outputs
    if set(inputs) != {input_name} or set(outputs) != {output_name}:
        raise RuntimeError(f"exported signature has inputs {sorted(inputs)} and outputs {sorted(outputs)}")
    served = signature(**{input_name: tf.constant(samples)})[output_name].numpy()
    expected = model.predict(samples, verbose=0)
    if not np.allclose(served, expected, rtol=1e-5, atol=1e-6):
        raise RuntimeError("SavedModel outputs differ from the in-process model's predictions")
    return {
        "name": SIGNATURE,
        "inputs": {key: _spec(value) for key, value in inputs.items()},
        "outputs": {key: _spec(value) for key, value in outputs.items()},
    }


def _spec(tensor_spec) -> dict:
    return {"dtype": tensor_spec.dtype.name, "shape": list(tensor_spec.shape.as_list())}
