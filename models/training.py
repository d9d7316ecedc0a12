"""Compile, fit (with callbacks), evaluate and distribute tf.keras models; the shared training loop."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from models.data import Dataset
from models.errors import TrainerError
from models.options import TrainOptions
from models.recipes.base import Recipe, TrainedModel
from models.report import Reporter
from models.scoring import metric_name, score

LOSSES = {"classification": "sparse_categorical_crossentropy", "binary": "binary_crossentropy",
          "regression": "mean_squared_error"}


def make_strategy(name: str) -> tf.distribute.Strategy:
    """default | mirrored (all visible devices) | multiworker (configured by TF_CONFIG).

    NOTE: call this before any other TensorFlow work: MultiWorkerMirroredStrategy must be created at start-up.
    """
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True unless this process is a non-chief worker of a multi-worker cluster."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def describe_strategy(strategy: tf.distribute.Strategy) -> str:
    """A one-line description for the progress output."""
    kind = type(strategy).__name__
    return f"{kind} with {strategy.num_replicas_in_sync} replica(s)"


def regularizer(opts: TrainOptions) -> keras.regularizers.Regularizer | None:
    """The kernel_regularizer the --l1/--l2 flags ask for, or None."""
    if opts.l1 and opts.l2:
        return keras.regularizers.L1L2(l1=opts.l1, l2=opts.l2)
    if opts.l1:
        return keras.regularizers.L1(opts.l1)
    if opts.l2:
        return keras.regularizers.L2(opts.l2)
    return None


def compile_model(model: keras.Model, task: str, optimizer: str, learning_rate: float) -> None:
    """Compile with the task's loss and metric and a fresh optimizer (adam or sgd with momentum)."""
    if optimizer == "sgd":
        opt = keras.optimizers.SGD(learning_rate=learning_rate, momentum=0.9)
    else:
        opt = keras.optimizers.Adam(learning_rate=learning_rate)
    metrics = ["mse"] if task == "regression" else ["accuracy"]
    model.compile(optimizer=opt, loss=LOSSES[task], metrics=metrics)


class ProgressPrinter(keras.callbacks.Callback):
    """Prints one line per epoch: loss, metrics and validation metrics."""

    def __init__(self, reporter: Reporter, phase: str, epochs: int) -> None:
        super().__init__()
        self._reporter, self._phase, self._epochs = reporter, phase, epochs
        self._started_s = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._started_s = time.monotonic()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        shown = sorted((k for k in (logs or {}) if k != "learning_rate"),
                       key=lambda k: (k.startswith("val_"), not k.endswith("loss"), k))
        values = "  ".join(f"{key} {logs[key]:.4f}" for key in shown)
        took_s = time.monotonic() - self._started_s
        width = len(str(self._epochs))
        self._reporter.progress(f"[{self._phase}] epoch {epoch + 1:>{width}}/{self._epochs}  {values}  ({took_s:.1f}s)")


def standard_callbacks(opts: TrainOptions, chief: bool, phase: str) -> list[keras.callbacks.Callback]:
    """EarlyStopping and ModelCheckpoint (native .keras) as the flags ask.

    A non-chief worker checkpoints into a throw-away folder so that workers never write the same file.
    """
    callbacks: list[keras.callbacks.Callback] = []
    if opts.early_stopping_patience > 0:
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor=opts.monitor, patience=opts.early_stopping_patience, restore_best_weights=True))
    if opts.checkpoint_dir is not None:
        folder = opts.checkpoint_dir if chief else Path(tempfile.mkdtemp(prefix="batchwise-worker-ckpt-"))
        folder.mkdir(parents=True, exist_ok=True)
        callbacks.append(keras.callbacks.ModelCheckpoint(
            str(folder / f"{opts.name}-{phase}-best.keras"), monitor=opts.monitor, save_best_only=True))
    return callbacks


def fit(model: keras.Model, data: Dataset, opts: TrainOptions, reporter: Reporter, *, phase: str,
        epochs: int, callbacks: list[keras.callbacks.Callback]) -> dict:
    """Fit on the training split with validation data; return the history dict.

    Under a multi-worker strategy this runs models.distributed's custom loop (Keras 3's fit is broken there).
    Raises TrainerError when the monitored quantity does not exist (bad --monitor).
    """
    all_callbacks = [ProgressPrinter(reporter, phase, epochs), *callbacks]
    if isinstance(model.distribute_strategy, tf.distribute.MultiWorkerMirroredStrategy):
        from models.distributed import fit_multiworker

        return fit_multiworker(model, data, epochs=epochs, batch_size=opts.batch_size, seed=opts.seed,
                               callbacks=all_callbacks)
    # tf.data, not numpy: Keras rebuilds a numpy validation iterator every epoch (~0.3 s each on 2 cores).
    train = tf.data.Dataset.from_tensor_slices((data.x_train, data.y_train))
    train = train.shuffle(len(data.x_train), seed=opts.seed, reshuffle_each_iteration=True).batch(opts.batch_size)
    validation = tf.data.Dataset.from_tensor_slices((data.x_val, data.y_val)).batch(opts.batch_size).cache()
    try:
        history = model.fit(train, validation_data=validation, epochs=epochs, shuffle=False, verbose=0,
                            callbacks=all_callbacks)
    except KeyError as exc:
        raise TrainerError(f"cannot monitor {exc}: choose a metric the model logs, e.g. val_loss") from None
    return history.history


def evaluate(model: keras.Model, data: Dataset) -> float:
    """The model's metric (accuracy or mse) on the held-out test split."""
    return score(data.task, predict(model, data.x_test), data.y_test)


def predict(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """Outputs of a plain (detached) model for a small array, without model.predict's per-model tracing."""
    return np.concatenate([keras.ops.convert_to_numpy(model(x[i : i + 512], training=False))
                           for i in range(0, len(x), 512)])


def train_standard(recipe: Recipe, data: Dataset, opts: TrainOptions, strategy: tf.distribute.Strategy,
                   reporter: Reporter) -> TrainedModel:
    """Build inside the strategy scope, compile, fit with the standard callbacks."""
    with strategy.scope():
        model = recipe.build(data, opts)
        compile_model(model, data.task, opts.optimizer, opts.learning_rate)
    history = fit(model, data, opts, reporter, phase="train", epochs=opts.epochs,
                  callbacks=standard_callbacks(opts, is_chief(strategy), "train"))
    return TrainedModel(model, info={"epochs_run": len(history.get("loss", []))})


def detach(model: keras.Model) -> keras.Model:
    """A plain copy of a (possibly distributed) model, outside any strategy, for export and evaluation."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def report_metric(reporter: Reporter, label: str, task: str, value: float) -> None:
    """Print `label: accuracy 0.9722` (or mse)."""
    reporter.progress(f"{label}: test {metric_name(task)} {value:.4f}")

