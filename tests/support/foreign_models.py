"""Models our trainer did not make: built with plain tf.keras, saved as `.keras` or SavedModel, plus data files.

Used by the `publish` tests and the CPU-node end-to-end test. TensorFlow is needed here (to build).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

VOCAB = 20
TOKENS = 6


@dataclass(frozen=True)
class TwoInput:
    """A functional model: float `features` [N,4] and int32 `tokens` [N,6] -> `probs` [N,3], `score` [N,1]."""

    path: Path  # the .keras file
    calibration: Path  # .npz keyed by input name
    rows: dict[str, np.ndarray]  # held-back rows (not in the calibration file)
    expected: dict[str, np.ndarray]  # the source model's outputs on `rows`


def two_input_rows(count: int, seed: int) -> dict[str, np.ndarray]:
    """Random rows for TwoInput: normal features and token ids in [0, VOCAB)."""
    rng = np.random.default_rng(seed)
    return {
        "features": rng.standard_normal((count, 4)).astype(np.float32),
        "tokens": rng.integers(0, VOCAB, (count, TOKENS)).astype(np.int32),
    }


def build_two_input(folder: Path) -> TwoInput:
    """Build and save the two-input model (untrained: the weights are seeded) and its calibration file."""
    import keras

    keras.utils.set_random_seed(7)
    features = keras.Input((4,), name="features")
    tokens = keras.Input((TOKENS,), name="tokens", dtype="int32")
    pooled = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(VOCAB, 4)(tokens))
    hidden = keras.layers.Dense(8, activation="relu")(keras.layers.Concatenate()([features, pooled]))
    probs = keras.layers.Dense(3, activation="softmax", name="probs")(hidden)
    score = keras.layers.Dense(1, activation="sigmoid", name="score")(hidden)
    model = keras.Model([features, tokens], [probs, score])
    path = folder / "two_input.keras"
    model.save(path)
    calibration = folder / "two_input_calibration.npz"
    np.savez(calibration, **two_input_rows(80, seed=1))
    rows = two_input_rows(32, seed=2)
    probs_out, score_out = model.predict([rows["features"], rows["tokens"]], verbose=0)
    return TwoInput(path, calibration, rows, {"probs": probs_out, "score": score_out})


def build_regression_savedmodel(folder: Path) -> tuple[Path, Path]:
    """A small trained regression MLP exported with `model.export` (endpoint `serve`, also serving_default).

    Returns (SavedModel folder, calibration .csv of its single input).
    """
    import keras

    keras.utils.set_random_seed(3)
    rng = np.random.default_rng(3)
    x = rng.uniform(-1, 1, (256, 3)).astype(np.float32)
    y = (x @ np.array([0.5, -0.3, 0.2], dtype=np.float32) + 0.1).reshape(-1, 1)
    model = keras.Sequential(
        [keras.Input((3,), name="x"), keras.layers.Dense(8, activation="tanh"), keras.layers.Dense(1)]
    )
    model.compile("adam", "mse")
    model.fit(x, y, epochs=3, verbose=0)
    path = folder / "regression_savedmodel"
    model.export(str(path), verbose=False)
    csv_path = folder / "regression_calibration.csv"
    np.savetxt(csv_path, x[:60], delimiter=",", header="a,b,c", comments="")
    return path, csv_path


def build_classifier(folder: Path) -> tuple[Path, Path, Path]:
    """An iris classifier trained a few epochs, saved as `.keras`. Returns (model, calibration .npz, eval .npz)."""
    import keras

    from models.data import load_iris

    keras.utils.set_random_seed(5)
    x, y = load_iris()
    order = np.random.default_rng(5).permutation(len(x))
    x, y = x[order].astype(np.float32), y[order]
    model = keras.Sequential(
        [
            keras.Input((4,), name="measurements"),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x[:100], y[:100], epochs=40, batch_size=16, verbose=0)
    path = folder / "iris_classifier.keras"
    model.save(path)
    calibration, evaluation = folder / "iris_calibration.npz", folder / "iris_eval.npz"
    np.savez(calibration, x=x[:100])
    np.savez(evaluation, measurements=x[100:], y=y[100:])
    return path, calibration, evaluation


def build_unconvertible(folder: Path) -> tuple[Path, Path]:
    """(an LSTM that is not unrolled: its TensorList ops need Flex, a model with a string input)."""
    import keras

    tokens = keras.Input((5,), name="tokens", dtype="int32")
    lstm = keras.Model(tokens, keras.layers.Dense(1)(keras.layers.LSTM(4)(keras.layers.Embedding(10, 4)(tokens))))
    text = keras.Input((1,), name="text", dtype="string")
    strings = keras.Model(text, keras.layers.StringLookup(vocabulary=["a", "b"])(text))
    paths = folder / "lstm.keras", folder / "strings.keras"
    lstm.save(paths[0])
    strings.save(paths[1])
    return paths
