"""Writing a version folder directly: a variant whose conversion fails is recorded, not published."""

from __future__ import annotations

import keras
import numpy as np

from models.artifacts import VersionContext, write_version
from models.data import make_dataset
from models.options import TrainOptions
from models.recipes.base import TrainedModel
from models.report import Reporter, summary_table


def test_failed_conversion_is_recorded_and_nothing_is_written(tmp_path):
    """A rolled (while-loop) LSTM needs Flex ops that LiteRT CPU nodes lack: the converter refuses it."""
    rng = np.random.default_rng(0)
    x = rng.integers(1, 20, size=(60, 6)).astype(np.int32)
    data = make_dataset(x, (x[:, 0] > 10).astype(np.int32), task="binary", input_name="tokens", source="test",
                        validation_split=0.2, seed=0)
    inputs = keras.Input((6,), dtype="int32", name="tokens")
    hidden = keras.layers.LSTM(4)(keras.layers.Embedding(20, 4)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(hidden))
    opts = TrainOptions("sequence", tmp_path, epochs=1, batch_size=8, learning_rate=0.01, variants=("float32",))
    folder = tmp_path / "v"
    folder.mkdir()
    card = write_version(folder, VersionContext(TrainedModel(model), data, opts, 1, Reporter(quiet=True)))
    float32 = card["variants"]["float32"]
    assert not float32["published"] and float32["refused_reason"].startswith("conversion failed: ")
    assert not (folder / "tflite").exists()
    assert card["variants"]["savedmodel"]["published"] and (folder / "model_card.json").is_file()
    assert "conversion failed" in summary_table(card)
