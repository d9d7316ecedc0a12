"""Small building blocks the recipes share."""

from __future__ import annotations

import keras
import numpy as np

from models.data import Dataset
from models.options import TrainOptions
from models.training import regularizer


def normalization(x_train: np.ndarray) -> keras.layers.Normalization:
    """A Normalization layer with the training split's per-feature mean and variance baked in.

    Computed with numpy instead of adapt() so it behaves the same under every tf.distribute strategy,
    and the served model accepts raw (unscaled) features.
    """
    variance = np.maximum(x_train.var(axis=0), 1e-6)
    return keras.layers.Normalization(mean=x_train.mean(axis=0), variance=variance)


def head(hidden: keras.KerasTensor, data: Dataset, opts: TrainOptions) -> keras.KerasTensor:
    """The task's output layer, named after the signature output (probabilities/probability/prediction)."""
    if data.task == "classification":
        return keras.layers.Dense(data.num_classes, activation="softmax", name=data.output_name,
                                  kernel_regularizer=regularizer(opts))(hidden)
    activation = "sigmoid" if data.task == "binary" else None
    return keras.layers.Dense(1, activation=activation, name=data.output_name,
                              kernel_regularizer=regularizer(opts))(hidden)


def dropout(hidden: keras.KerasTensor, opts: TrainOptions, default: float) -> keras.KerasTensor:
    """Dropout at --dropout (or the recipe's default); no layer at all for a rate of 0."""
    rate = default if opts.dropout is None else opts.dropout
    return keras.layers.Dropout(rate)(hidden) if rate > 0 else hidden
