"""A model someone else trained: a `.keras` file or a SavedModel folder, read through one signature.

`load_source` checks the source before anything is written; `SourceModel.export` then writes it
into a version folder as a SavedModel whose `serving_default` signature is the chosen one, which is
what the converter, the trainer's evaluators and the server all read.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contract.layout import CARD_FILE, TFLITE_DIR
from models.errors import TrainerError
from models.export import SIGNATURE

# dtypes the TFLite converter and LiteRT take at a model's edge (strings and the like are refused).
SUPPORTED_DTYPES = ("float32", "float16", "float64", "int8", "int16", "int32", "int64", "uint8", "bool")


@dataclass(frozen=True)
class TensorSpec:
    """One signature tensor: its numpy dtype name and shape (None for a dynamic dimension)."""

    dtype: str
    shape: tuple[int | None, ...]

    def card(self) -> dict:
        """The card's `{dtype, shape}` entry."""
        return {"dtype": self.dtype, "shape": list(self.shape)}


@dataclass
class SourceModel:
    """A loaded source: its kind, signature tensors, a predictor and an exporter."""

    path: Path
    kind: str  # "keras" or "savedmodel"
    signature: str  # the source's signature that is published as serving_default
    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]
    predict: Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]
    export: Callable[[Path], None]

    def provenance(self) -> dict:
        """The card's `source` section: where the model came from and a hash of its files."""
        return {
            "path": str(self.path.resolve()),
            "format": self.kind,
            "signature": self.signature,
            "sha256": files_sha256(self.path),
        }


def files_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, or over a folder's files (relative path, NUL, contents; sorted by path)."""
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        if path.is_dir():  # a single file hashes as `sha256sum` does
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def load_source(path: Path, signature: str | None) -> SourceModel:
    """Load a `.keras` file or a SavedModel folder. Raises TrainerError naming what is wrong."""
    if path.is_file() and path.suffix == ".keras":
        if signature not in (None, SIGNATURE):
            raise TrainerError(f"--signature applies to a SavedModel folder, not to the .keras file {path}")
        source = _load_keras(path)
    elif path.is_dir() and (path / "saved_model.pb").is_file():
        source = _load_savedmodel(path, signature or SIGNATURE)
    elif path.exists():
        raise TrainerError(f"{path}: not a .keras file or a SavedModel folder (with saved_model.pb)")
    else:
        raise TrainerError(f"source model not found: {path}")
    for side, specs in (("input", source.inputs), ("output", source.outputs)):
        for name, spec in specs.items():
            if spec.dtype not in SUPPORTED_DTYPES:
                raise TrainerError(
                    f"{side} {name!r} has dtype {spec.dtype}, which TFLite cannot take "
                    f"(supported: {', '.join(SUPPORTED_DTYPES)})"
                )
    return source


def _load_keras(path: Path) -> SourceModel:
    import keras

    try:
        model = keras.saving.load_model(str(path), compile=False)
    except Exception as exc:  # keras raises many types for a bad file
        raise TrainerError(f"{path}: cannot load the .keras file ({_short(exc)})") from None
    names = [tensor.name for tensor in model.inputs]
    if len(set(names)) != len(names):
        raise TrainerError(f"{path}: the model's inputs need distinct names, got {names}")
    output_names = list(getattr(model, "output_names", None) or [f"output_{i}" for i in range(len(model.outputs))])
    inputs = {
        n: TensorSpec(_dtype_name(t.dtype), (None, *t.shape[1:])) for n, t in zip(names, model.inputs, strict=True)
    }
    outputs = {
        n: TensorSpec(_dtype_name(t.dtype), (None, *t.shape[1:]))
        for n, t in zip(output_names, model.outputs, strict=True)
    }

    def call(feed: Mapping[str, np.ndarray]):
        args = [feed[name] for name in names]
        result = model(args if len(args) > 1 else args[0], training=False)
        if isinstance(result, Mapping):
            return {name: result[name] for name in output_names}
        result = result if isinstance(result, list | tuple) else [result]
        return dict(zip(output_names, result, strict=True))

    def predict(feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {k: np.asarray(v) for k, v in call(_typed(feed, inputs)).items()}

    return SourceModel(
        path,
        "keras",
        SIGNATURE,
        inputs,
        outputs,
        predict,
        export=lambda folder: _export_keras(model, call, inputs, folder),
    )


def _export_keras(model, call, inputs: dict[str, TensorSpec], folder: Path) -> None:
    """ExportArchive freezes weights for the converter (see models.export.export_savedmodel)."""
    import keras
    import tensorflow as tf

    specs = {n: tf.TensorSpec(list(s.shape), tf.as_dtype(s.dtype), name=n) for n, s in inputs.items()}
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(SIGNATURE, call, input_signature=[specs])
    archive.write_out(str(folder), verbose=False)


def _load_savedmodel(path: Path, signature: str) -> SourceModel:
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as exc:  # TF raises many types for a bad folder
        raise TrainerError(f"{path}: cannot load the SavedModel ({_short(exc)})") from None
    if signature not in loaded.signatures:
        raise TrainerError(
            f"{path}: no signature {signature!r} (it has {sorted(loaded.signatures) or 'none'}); "
            "choose one with --signature"
        )
    function = loaded.signatures[signature]
    inputs = {n: _spec(s) for n, s in function.structured_input_signature[1].items()}
    outputs = {n: _spec(s) for n, s in function.structured_outputs.items()}

    def predict(feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        result = function(**{k: tf.constant(v) for k, v in _typed(feed, inputs).items()})
        return {k: v.numpy() for k, v in result.items()}

    def export(folder: Path) -> None:
        if signature == SIGNATURE:  # publish the user's files as they are
            shutil.copytree(path, folder, dirs_exist_ok=True, ignore=shutil.ignore_patterns(CARD_FILE, TFLITE_DIR))
        else:
            tf.saved_model.save(loaded, str(folder), signatures={SIGNATURE: function})

    return SourceModel(path, "savedmodel", signature, inputs, outputs, predict, export)


def _spec(tensor_spec) -> TensorSpec:
    shape = tensor_spec.shape
    dims = tuple(shape.as_list()) if shape.rank is not None else ()
    return TensorSpec(tensor_spec.dtype.name, dims)


def _dtype_name(dtype) -> str:
    try:
        return np.dtype(dtype).name
    except TypeError:  # e.g. "string", which numpy does not know; refused by load_source
        return str(dtype)


def _typed(feed: Mapping[str, np.ndarray], specs: Mapping[str, TensorSpec]) -> dict[str, np.ndarray]:
    return {name: np.asarray(feed[name], dtype=spec.dtype) for name, spec in specs.items()}


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]
