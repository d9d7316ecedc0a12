"""Builds the benchmark model: the classic 28x28 MNIST CNN as a repository version with every TFLite variant.

Layers: Conv2D 32 -> MaxPool -> Conv2D 64 -> MaxPool -> Conv2D 64 -> Flatten -> Dense 64 -> Dense 10,
input `image` [None, 28, 28, 1] float32 -> `probabilities` [None, 10]. Only its cost matters for
throughput, but it is trained for a few epochs on scikit-learn's bundled 8x8 digits upscaled to
28x28 (MNIST itself cannot be downloaded here), so that the variants have real accuracies to
compare and the server's consistency guard sees confident predictions. `--epochs 0` leaves the
weights untrained (accuracy is then reported as n/a).

Run in its own process (it imports TensorFlow): `python -m loadtests.mnist_model --repository DIR`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from contract.card import new_card, variant_entry, write_card
from contract.layout import TFLITE_VARIANTS, variant_path

MODEL_NAME = "mnist_cnn"
INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"
VARIANTS = TFLITE_VARIANTS
N_SAMPLES = 8  # rows of the card's samples (warm-up and the consistency guard)


def digits_28x28(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """sklearn's digits upscaled to 28x28x1 in [0, 1]: (x_train, y_train, x_test, y_test), 80/20 split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    images = (x / 16.0).reshape(-1, 8, 8).astype(np.float32)
    index = np.minimum((np.arange(28) * 8) // 28, 7)  # nearest-neighbour upscale 8 -> 28
    upscaled = images[:, index][:, :, index][..., None]
    x_train, x_test, y_train, y_test = train_test_split(upscaled, y, test_size=0.2, random_state=seed, stratify=y)
    return x_train, y_train, x_test, y_test


def build_cnn(seed: int = 0):
    """The classic Keras MNIST CNN (about 93k parameters)."""
    import keras

    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(64, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(64, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )


def export_savedmodel(model, path: Path) -> None:
    """Export `serving_default` (image -> probabilities) through keras.export.ExportArchive.

    ExportArchive freezes the variables into the graph the TFLite converter reads; the plain
    tf.saved_model.save route gives Keras 3 models whose converted variants read uninitialised
    variables and return garbage.
    """
    import keras
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    archive.track(model)
    spec = [tf.TensorSpec((None, 28, 28, 1), tf.float32, name=INPUT_NAME)]
    archive.add_endpoint("serving_default", lambda x: {OUTPUT_NAME: model(x)}, spec)
    archive.write_out(str(path), verbose=False)


def variant_accuracy(path: Path, variant: str, x_test: np.ndarray, y_test: np.ndarray) -> float:
    """Top-1 accuracy of one variant on the test split, through our own TFLiteBackend (quantizes int8 I/O)."""
    from service.runtime.tflite import TFLiteBackend

    backend = TFLiteBackend(path, variant=variant, num_threads=2, pool_size=1)
    backend.load()
    try:
        probabilities = np.concatenate(
            [backend.predict("serving_default", {INPUT_NAME: x_test[i : i + 64]})[OUTPUT_NAME]
             for i in range(0, len(x_test), 64)]
        )
    finally:
        backend.unload()
    return float((probabilities.argmax(1) == y_test).mean())


def build_repository(repository: Path, *, epochs: int = 3, version: int = 1, seed: int = 0) -> Path:
    """Train (or not), export, convert and publish MODEL_NAME/<version> under `repository`; return the folder.

    The version is written into a temporary folder and renamed into place, as the trainer does.
    """
    import tensorflow as tf

    from models.quantize import convert  # the trainer's conversion (it imports TensorFlow)

    x_train, y_train, x_test, y_test = digits_28x28(seed)
    model = build_cnn(seed)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    if epochs:
        model.fit(x_train, y_train, epochs=epochs, batch_size=32, verbose=0)
    tmp = repository / MODEL_NAME / f".tmp-{version}-{os.getpid()}"
    tmp.mkdir(parents=True)
    export_savedmodel(model, tmp)
    serve = tf.saved_model.load(str(tmp)).signatures["serving_default"]
    sm_test = serve(**{INPUT_NAME: tf.constant(x_test)})[OUTPUT_NAME].numpy()
    accuracy = float((sm_test.argmax(1) == y_test).mean()) if epochs else None
    variants = {"savedmodel": variant_entry("savedmodel", published=True, accuracy=accuracy,
                                            size_bytes=_dir_bytes(tmp))}
    for variant in VARIANTS:
        path = variant_path(tmp, variant)
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(convert(tmp, variant, INPUT_NAME, x_train[:200]))
        accuracy = variant_accuracy(path, variant, x_test, y_test) if epochs else None
        variants[variant] = variant_entry(variant, published=True, interface="int8" if variant == "int8" else "float",
                                          accuracy=accuracy, size_bytes=path.stat().st_size)
    samples = (x_test[:N_SAMPLES], sm_test[:N_SAMPLES])
    card = _card(version, epochs, seed, variants, samples=samples, n_train=len(x_train), n_test=len(x_test))
    write_card(tmp, card)
    final = repository / MODEL_NAME / str(version)
    os.rename(tmp, final)
    return final


def _card(version, epochs, seed, variants, *, samples, n_train, n_test) -> dict:
    signature = {
        "name": "serving_default",
        "inputs": {INPUT_NAME: {"dtype": "float32", "shape": [None, 28, 28, 1]}},
        "outputs": {OUTPUT_NAME: {"dtype": "float32", "shape": [None, 10]}},
    }
    return new_card(
        MODEL_NAME, version, task="classification", signature=signature, variants=variants,
        samples=({INPUT_NAME: samples[0]}, {OUTPUT_NAME: samples[1]}), recipe="mnist_cnn_bench",
        created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        hyperparameters={"epochs": epochs, "batch_size": 32, "optimizer": "adam"}, seed=seed,
        data={"source": "sklearn.datasets.load_digits upscaled to 28x28", "n_train": n_train, "n_test": n_test},
        quality_gate={"max_accuracy_drop_points": None},  # the benchmark publishes every variant
    )


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.mnist_model", description=__doc__.split("\n")[0])
    parser.add_argument("--repository", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=3, help="0 leaves the weights untrained")
    args = parser.parse_args(argv)
    start_s = time.monotonic()
    folder = build_repository(args.repository, epochs=args.epochs)
    print(json.dumps({"version_dir": str(folder), "build_s": round(time.monotonic() - start_s, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
