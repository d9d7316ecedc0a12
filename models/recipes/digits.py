"""`digits`: a small CNN on scikit-learn's bundled 8x8 digit images."""

from __future__ import annotations

from models.data import Dataset, class_labels, features, load_digits, make_dataset, read_table
from models.errors import TrainerError
from models.options import RecipeDefaults, TrainOptions
from models.recipes.base import Recipe

IMAGE_SHAPE = (8, 8, 1)
N_CLASSES = 10


def read_images(opts: TrainOptions, num_classes: int | None) -> tuple:
    """Bundled digits, or --data with 64 pixel values (0..1) per row: returns (x, y, source)."""
    if opts.data is None:
        return *load_digits(), "sklearn.datasets.load_digits"
    raw_x, raw_y = read_table(opts.data, opts.label_column)
    x = features(raw_x, IMAGE_SHAPE, str(opts.data))
    if x.min() < 0.0 or x.max() > 1.0:
        raise TrainerError(f"{opts.data}: pixel values must be scaled to [0, 1], got {x.min():g}..{x.max():g}")
    return x, class_labels(raw_y, num_classes, str(opts.data)), str(opts.data)


def load_data(opts: TrainOptions) -> Dataset:
    """Digits images [N, 8, 8, 1] in 0..1 with labels 0..9."""
    x, y, source = read_images(opts, N_CLASSES)
    return make_dataset(x, y, task="classification", input_name="pixels", source=source,
                        validation_split=opts.validation_split, seed=opts.seed, num_classes=N_CLASSES)


def build_cnn(data: Dataset, opts: TrainOptions, name: str = "digits"):
    """Conv2D(32) -> MaxPool -> Conv2D(64) -> MaxPool -> Flatten -> Dense(256) -> Dropout -> Dense(softmax)."""
    import keras

    from models.recipes.layers import dropout, head
    from models.training import regularizer

    inputs = keras.Input(shape=IMAGE_SHAPE, name=data.input_name)
    hidden = inputs
    for filters in (32, 64):
        hidden = keras.layers.Conv2D(filters, 3, padding="same", activation="relu",
                                     kernel_regularizer=regularizer(opts))(hidden)
        hidden = keras.layers.MaxPooling2D()(hidden)
    hidden = keras.layers.Flatten()(hidden)
    hidden = keras.layers.Dense(256, activation="relu", kernel_regularizer=regularizer(opts))(hidden)
    hidden = dropout(hidden, opts, default=0.3)
    return keras.Model(inputs, head(hidden, data, opts), name=name)


RECIPE = Recipe("digits", "a CNN on scikit-learn's 8x8 digit images; input `pixels` [N,8,8,1] in 0..1",
                RecipeDefaults(epochs=12, batch_size=32, learning_rate=0.002), load_data, build_cnn)
