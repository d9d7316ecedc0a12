"""Tiny real Keras models, exported as SavedModels and converted to every TFLite variant, once per session.

TensorFlow is used here (to train, export and convert), never by the code under test.
`build_litert_models()` is cached, so every test module shares one build.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contract.card import new_card, variant_entry, write_card
from contract.layout import TFLITE_VARIANTS, variant_path

__all__ = ["TFLITE_VARIANTS", "ExportedModel", "LiteRTModels", "build_litert_models"]


@dataclass(frozen=True)
class ExportedModel:
    """A version folder in the repository layout, plus a test split and the SavedModel's outputs on it."""

    version_dir: Path
    input_name: str
    output_name: str
    x_test: np.ndarray
    y_savedmodel: np.ndarray  # serving_default outputs of the SavedModel on x_test

    def tflite(self, variant: str) -> Path:
        return variant_path(self.version_dir, variant)

    def card(self) -> dict:
        """A fresh copy of the model card as a JSON object (tests may change it)."""
        return read_card_json(self.version_dir)


@dataclass(frozen=True)
class LiteRTModels:
    """Everything the LiteRT tests need; paths live in a temporary folder removed at exit."""

    iris: ExportedModel  # MLP, features[None,4] -> probabilities[None,3], all four variants
    digits: ExportedModel  # CNN, pixels[None,8,8,1] -> probabilities[None,10], float32 and int8
    fixed_batch3: Path  # the iris MLP converted with a fixed batch dimension of 3
    two_signatures: Path  # two signatures in two subgraphs: serving_default and "scores"
    no_signatures: Path  # iris float32 with its SignatureDefs stripped
    randomized: Path  # iris float32 with its weights overwritten by random values


@functools.cache
def build_litert_models() -> LiteRTModels:
    """Train, export and convert everything (about 15 s on two cores). Cached for the session."""
    import keras

    root = Path(tempfile.mkdtemp(prefix="batchwise-litert-"))
    atexit.register(shutil.rmtree, root, True)
    keras.utils.set_random_seed(0)
    iris_model, iris_split = _train_iris()
    iris = _publish(root / "iris" / "1", iris_model, "features", iris_split, TFLITE_VARIANTS)
    digits_model, digits_split = _train_digits()
    digits = _publish(root / "digits" / "1", digits_model, "pixels", digits_split, ("float32", "int8"))
    extra = root / "extra"
    extra.mkdir()
    return LiteRTModels(
        iris=iris,
        digits=digits,
        fixed_batch3=_fixed_batch_model(extra, iris_model),
        two_signatures=_two_signature_model(extra, iris_model),
        no_signatures=_rewrite(iris.tflite("float32"), extra / "no_signatures.tflite", strip_signatures=True),
        randomized=_rewrite(iris.tflite("float32"), extra / "randomized.tflite", randomize=True),
    )


def _train_iris():
    import keras
    from sklearn.datasets import load_iris
    from sklearn.model_selection import train_test_split

    x, y = load_iris(return_X_y=True)
    x = ((x - x.mean(0)) / x.std(0)).astype(np.float32)
    split = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(split[0], split[2], epochs=60, batch_size=16, verbose=0)
    return model, split


def _train_digits():
    import keras
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32).reshape(-1, 8, 8, 1)
    split = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(split[0], split[2], epochs=8, batch_size=32, verbose=0)
    return model, split


def _publish(version_dir: Path, model, input_name: str, split, variants) -> ExportedModel:
    """Write the SavedModel, the TFLite variants and a model card (classification, 4 samples)."""
    import tensorflow as tf

    from models.quantize import convert  # the trainer's conversion (it imports TensorFlow)

    x_train, x_test = split[0], split[1]
    _export(version_dir, model, input_name, (None, *x_train.shape[1:]))
    serve = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    y_savedmodel = serve(**{input_name: tf.constant(x_test)})["probabilities"].numpy()
    for variant in variants:
        path = variant_path(version_dir, variant)
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(convert(version_dir, variant, input_name, x_train[:100]))
    entries = {v: variant_entry(v, published=True) for v in ("savedmodel", *variants)}
    samples = ({input_name: x_test[:4]}, {"probabilities": y_savedmodel[:4]})
    card = new_card(
        version_dir.parent.name,
        1,
        task="classification",
        signature="serving_default",
        variants=entries,
        samples=samples,
    )
    write_card(version_dir, card)
    return ExportedModel(version_dir, input_name, "probabilities", x_test, y_savedmodel)


def read_card_json(version_dir: Path) -> dict:
    """The card in `version_dir` as a plain JSON object."""
    import json

    from contract.layout import CARD_FILE

    return json.loads((version_dir / CARD_FILE).read_text())


def _export(path: Path, model, input_name: str, shape, extra_endpoint: bool = False) -> None:
    """Export through keras' ExportArchive, which freezes variables so TFLite conversion sees constants.

    (tf.saved_model.save on a Keras 3 model keeps resource variables; the converted model then
    reads uninitialised variables and returns garbage.)
    """
    import keras
    import tensorflow as tf

    spec = [tf.TensorSpec(shape, tf.float32, name=input_name)]
    archive = keras.export.ExportArchive()
    archive.track(model)
    # The signature's input name comes from the TensorSpec's name.
    archive.add_endpoint("serving_default", lambda x: {"probabilities": model(x)}, spec)
    if extra_endpoint:
        archive.add_endpoint("scores", lambda x: {"scores": model(x) * 100.0}, spec)
    archive.write_out(str(path), verbose=False)


def _fixed_batch_model(folder: Path, model) -> Path:
    from models.quantize import convert  # the trainer's conversion (it imports TensorFlow)
    _export(folder / "fixed_sm", model, "features", (3, 4))
    path = folder / "fixed_batch3.tflite"
    path.write_bytes(convert(folder / "fixed_sm", "float32", None, None))
    return path


def _two_signature_model(folder: Path, model) -> Path:
    from models.quantize import convert  # the trainer's conversion (it imports TensorFlow)
    _export(folder / "two_sm", model, "features", (None, 4), extra_endpoint=True)
    path = folder / "two_signatures.tflite"
    path.write_bytes(convert(folder / "two_sm", "float32", None, None, signature_keys=("serving_default", "scores")))
    return path


def _rewrite(source: Path, target: Path, *, strip_signatures: bool = False, randomize: bool = False) -> Path:
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(source))
    if strip_signatures:
        model.signatureDefs = []
    if randomize:
        flatbuffer_utils.randomize_weights(model, random_seed=1)
    flatbuffer_utils.write_model(model, str(target))
    return target
