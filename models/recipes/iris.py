"""`iris`: the classic first model, Dense(10, relu) -> Dense(3, softmax) on scikit-learn's iris data."""

from __future__ import annotations

from models.data import Dataset, class_labels, features, load_iris, make_dataset, read_table
from models.options import RecipeDefaults, TrainOptions
from models.recipes.base import Recipe

N_FEATURES = 4
N_CLASSES = 3


def load_data(opts: TrainOptions) -> Dataset:
    """Bundled iris, or --data with 4 feature columns and labels 0..2."""
    if opts.data is None:
        x, y, source = *load_iris(), "sklearn.datasets.load_iris"
    else:
        raw_x, raw_y = read_table(opts.data, opts.label_column)
        x = features(raw_x, (N_FEATURES,), str(opts.data))
        y, source = class_labels(raw_y, N_CLASSES, str(opts.data)), str(opts.data)
    return make_dataset(x, y, task="classification", input_name="features", source=source,
                        validation_split=opts.validation_split, seed=opts.seed, num_classes=N_CLASSES)


def build(data: Dataset, opts: TrainOptions):
    """Input(features[4]) -> Normalization -> Dense(10, relu) -> [Dropout] -> Dense(3, softmax)."""
    import keras

    from models.recipes.layers import dropout, head, normalization
    from models.training import regularizer

    inputs = keras.Input(shape=(N_FEATURES,), name=data.input_name)
    hidden = normalization(data.x_train)(inputs)
    hidden = keras.layers.Dense(10, activation="relu", kernel_regularizer=regularizer(opts))(hidden)
    hidden = dropout(hidden, opts, default=0.0)
    return keras.Model(inputs, head(hidden, data, opts), name="iris")


RECIPE = Recipe("iris", "Dense(10) -> Dense(3) on scikit-learn's iris data; input `features` [N,4]",
                RecipeDefaults(epochs=40, batch_size=16, learning_rate=0.01), load_data, build)
