"""`tabular`: an MLP on a user CSV or NPZ (--data), classification or regression (--task)."""

from __future__ import annotations

import numpy as np

from models.data import Dataset, class_labels, features, make_dataset, read_table
from models.errors import TrainerError
from models.options import RecipeDefaults, TrainOptions
from models.recipes.base import Recipe


def load_data(opts: TrainOptions) -> Dataset:
    """--data rows of numeric features; labels are class ids 0..K-1 or real-valued targets."""
    if opts.data is None:
        raise TrainerError("the tabular recipe needs --data PATH (a .csv with a header row, or a .npz with x, y)")
    raw_x, raw_y = read_table(opts.data, opts.label_column)
    if raw_x.ndim != 2:
        raise TrainerError(f"{opts.data}: shape mismatch, features must be [examples, columns], got {raw_x.shape}")
    x = features(raw_x, raw_x.shape[1:], str(opts.data))
    where = str(opts.data)
    if opts.task == "regression":
        y = np.asarray(raw_y, dtype=np.float32)
        if y.ndim != 1 or not np.all(np.isfinite(y)):
            raise TrainerError(f"{where}: regression targets must be one finite number per row")
        return make_dataset(x, y, task="regression", input_name="features", source=where,
                            validation_split=opts.validation_split, seed=opts.seed)
    y = class_labels(raw_y, None, where)
    num_classes = int(y.max()) + 1
    if num_classes < 2:
        raise TrainerError(f"{where}: classification needs at least two classes, labels are all {y[0]}")
    return make_dataset(x, y, task="classification", input_name="features", source=where,
                        validation_split=opts.validation_split, seed=opts.seed, num_classes=num_classes)


def build(data: Dataset, opts: TrainOptions):
    """Input -> Normalization -> Dense(32) -> [Dropout] -> Dense(16) -> softmax or linear head."""
    import keras

    from models.recipes.layers import dropout, head, normalization
    from models.training import regularizer

    inputs = keras.Input(shape=data.input_shape, name=data.input_name)
    hidden = normalization(data.x_train)(inputs)
    hidden = keras.layers.Dense(32, activation="relu", kernel_regularizer=regularizer(opts))(hidden)
    hidden = dropout(hidden, opts, default=0.0)
    hidden = keras.layers.Dense(16, activation="relu", kernel_regularizer=regularizer(opts))(hidden)
    return keras.Model(inputs, head(hidden, data, opts), name="tabular")


RECIPE = Recipe("tabular", "an MLP on your --data CSV/NPZ, --task classification|regression; input `features` [N,F]",
                RecipeDefaults(epochs=30, batch_size=32, learning_rate=0.005), load_data, build)
