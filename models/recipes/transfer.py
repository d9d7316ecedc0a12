"""`transfer`: reuse a trained CNN for a new task: train a new head on the frozen base, then fine-tune.

By default the base is a digits CNN that this run trains on classes 0-4, and the new task is
classes 5-9 (relabelled 0-4). --base-model takes a user's `.keras` file instead (its input must
match the data), --data a user's image set. Accuracy is reported after each phase.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from models.data import Dataset, load_digits, make_dataset
from models.errors import TrainerError
from models.options import RecipeDefaults, TrainOptions
from models.recipes.base import Recipe, TrainedModel
from models.recipes.digits import build_cnn, read_images
from models.report import Reporter

BASE_CLASSES = range(0, 5)
NEW_CLASSES = range(5, 10)


def _digits_subset(classes: range) -> tuple:
    x, y = load_digits()
    keep = (y >= classes.start) & (y < classes.stop)
    return x[keep], y[keep] - classes.start


def load_data(opts: TrainOptions) -> Dataset:
    """The new task: digits 5-9 relabelled 0-4, or --data images (any number of classes)."""
    if opts.data is None:
        x, y = _digits_subset(NEW_CLASSES)
        source = "sklearn.datasets.load_digits, classes 5-9 relabelled 0-4"
    else:
        x, y, source = read_images(opts, None)
    return make_dataset(x, y, task="classification", input_name="pixels", source=source,
                        validation_split=opts.validation_split, seed=opts.seed, num_classes=int(y.max()) + 1)


def _load_base(path: Path, data: Dataset):
    import keras

    if not path.is_file():
        raise TrainerError(f"base model not found: {path}")
    try:
        base = keras.models.load_model(path, compile=False)
    except Exception as exc:  # Keras raises many types for a bad file; one line is enough for the user
        raise TrainerError(f"cannot load base model {path}: {str(exc).splitlines()[0][:200]}") from None
    if tuple(base.input_shape[1:]) != data.input_shape:
        raise TrainerError(f"shape mismatch: base model {path} takes {tuple(base.input_shape[1:])}, "
                           f"the data has {data.input_shape}")
    return base


def _train_base(data: Dataset, opts: TrainOptions, strategy, reporter: Reporter) -> tuple:
    """Train a digits CNN on classes 0-4 (the base "our trainer produced"); return (model, test accuracy)."""
    from models.recipes.digits import RECIPE as DIGITS
    from models.training import compile_model, detach, evaluate, fit, is_chief, standard_callbacks

    # The base is trained the way the digits recipe trains (its defaults), whatever the head phase uses.
    opts = replace(opts, epochs=DIGITS.defaults.epochs, batch_size=DIGITS.defaults.batch_size,
                   learning_rate=DIGITS.defaults.learning_rate)
    x, y = _digits_subset(BASE_CLASSES)
    base_data = make_dataset(x, y, task="classification", input_name="pixels",
                             source="sklearn.datasets.load_digits, classes 0-4", validation_split=opts.validation_split,
                             seed=opts.seed, num_classes=len(BASE_CLASSES))
    with strategy.scope():
        base = build_cnn(base_data, opts, name="digits_base")
        compile_model(base, "classification", opts.optimizer, opts.learning_rate)
    fit(base, base_data, opts, reporter, phase="base", epochs=opts.epochs,
        callbacks=standard_callbacks(opts, is_chief(strategy), "base"))
    accuracy = evaluate(detach(base), base_data)
    if opts.checkpoint_dir is not None and is_chief(strategy):
        base.save(opts.checkpoint_dir / f"{opts.name}-base.keras")
    return base, accuracy


def _unfreeze_last(features, count: int) -> list[str]:
    """Make only the last `count` layers that have weights trainable; return their names."""
    features.trainable = True
    weighted = [layer for layer in features.layers if layer.weights]
    for layer in features.layers:
        layer.trainable = False
    chosen = weighted[-count:] if count > 0 else []
    for layer in chosen:
        layer.trainable = True
    return [layer.name for layer in chosen]


def _with_new_head(base, data: Dataset, opts: TrainOptions) -> tuple:
    """(model, features): the base minus its last layer, frozen, under a new head for data's classes."""
    import keras

    from models.recipes.layers import head

    features = keras.Model(base.inputs, base.layers[-2].output, name="base_features")
    features.trainable = False
    inputs = keras.Input(shape=data.input_shape, name=data.input_name)
    return keras.Model(inputs, head(features(inputs, training=False), data, opts), name="transfer"), features


def train(data: Dataset, opts: TrainOptions, strategy, reporter: Reporter) -> TrainedModel:
    """Phase 1: frozen base + new head. Phase 2: unfreeze the last N layers, fine-tune at a low rate."""
    from models.training import compile_model, detach, evaluate, fit, is_chief, report_metric, standard_callbacks

    phases, notes = {}, []
    with strategy.scope():
        if opts.base_model is not None:
            base = _load_base(opts.base_model, data)
            notes.append(f"base model: {opts.base_model}")
        else:
            base, phases["base_classes_0_4"] = _train_base(data, opts, strategy, reporter)
            report_metric(reporter, "base (digits 0-4)", "classification", phases["base_classes_0_4"])
        model, features = _with_new_head(base, data, opts)
        compile_model(model, data.task, opts.optimizer, opts.learning_rate)
    chief = is_chief(strategy)
    fit(model, data, opts, reporter, phase="head", epochs=opts.epochs,
        callbacks=standard_callbacks(opts, chief, "head"))
    head_only = detach(model)
    phases["head_only"] = evaluate(head_only, data)
    report_metric(reporter, "head only (base frozen)", data.task, phases["head_only"])

    unfrozen = _unfreeze_last(features, opts.fine_tune_layers)
    with strategy.scope():
        compile_model(model, data.task, "adam", opts.fine_tune_learning_rate)
    fine_tune_epochs = opts.fine_tune_epochs or 2 * opts.epochs
    fit(model, data, opts, reporter, phase="fine-tune", epochs=fine_tune_epochs,
        callbacks=standard_callbacks(opts, chief, "fine-tune"))
    tuned = detach(model)
    phases["fine_tuned"] = evaluate(tuned, data)
    report_metric(reporter, f"fine-tuned (unfrozen: {', '.join(unfrozen) or 'none'})", data.task, phases["fine_tuned"])
    chosen = tuned
    if _validation_accuracy(tuned, data) < _validation_accuracy(head_only, data):
        chosen = head_only
        notes.append("fine-tuning lowered validation accuracy; published the head-only weights")
    hyper = {"fine_tune_layers": opts.fine_tune_layers, "fine_tune_learning_rate": opts.fine_tune_learning_rate,
             "fine_tune_epochs": fine_tune_epochs}
    return TrainedModel(chosen, phases=phases, notes=notes,
                        info={"hyperparameters": hyper, "prune_learning_rate": opts.fine_tune_learning_rate})


def _validation_accuracy(model, data: Dataset) -> float:
    from models.scoring import score
    from models.training import predict

    return score(data.task, predict(model, data.x_val), data.y_val)


RECIPE = Recipe("transfer", "frozen CNN base + new head, then fine-tune its last N layers (default: digits 0-4 -> 5-9)",
                RecipeDefaults(epochs=15, batch_size=32, learning_rate=0.01), load_data, build_cnn, train)
