"""Tiny real SavedModels for tests, written in the repository layout the server reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from contract.card import new_card, variant_entry, write_card


def export_affine(path: Path, scale: float, offset: float) -> None:
    """`serving_default`: x[None,3] float32 -> y = x*scale+offset, total = sum(y); `total_only`: -> total."""
    import tensorflow as tf

    class Affine(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
        def serve(self, x):
            y = x * scale + offset
            return {"y": y, "total": tf.reduce_sum(y, axis=1)}

        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
        def total_only(self, x):
            return {"total": tf.reduce_sum(x * scale + offset, axis=1)}

    module = Affine()
    signatures = {"serving_default": module.serve, "total_only": module.total_only}
    tf.saved_model.save(module, str(path), signatures=signatures)


def export_strings(path: Path) -> None:
    """`serving_default`: text[None] string -> length[None] int32, upper[None] string."""
    import tensorflow as tf

    class Strings(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
        def serve(self, text):
            return {"length": tf.strings.length(text), "upper": tf.strings.upper(text)}

    module = Strings()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})


def export_keras_mlp(path: Path, seed: int = 7) -> np.ndarray:
    """A real tf.keras MLP (features[None,4] -> probabilities[None,3]); returns a sample input batch."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(10, activation="relu"), keras.layers.Dense(3, activation="softmax")]
    )

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="features")])
    def serve(features):
        return {"probabilities": model(features, training=False)}

    tf.saved_model.save(model, str(path), signatures={"serving_default": serve})
    sample = np.random.default_rng(seed).normal(size=(5, 4)).astype(np.float32)
    outputs = model(sample, training=False).numpy()
    card = new_card(
        path.parent.name, int(path.name), task="classification", signature="serving_default",
        variants={"savedmodel": variant_entry("savedmodel", published=True)},
        samples=({"features": sample}, {"probabilities": outputs}),
    )
    write_card(path, card)
    return sample


def build_repository(root: Path) -> Path:
    """affine/1 (x*2+1), affine/2 (x*3+1), strings/1, mlp/1 under `root`; returns root."""
    export_affine(root / "affine" / "1", 2.0, 1.0)
    export_affine(root / "affine" / "2", 3.0, 1.0)
    export_strings(root / "strings" / "1")
    export_keras_mlp(root / "mlp" / "1")
    return root
