"""A custom training loop for MultiWorkerMirroredStrategy, where Keras 3's model.fit is broken.

Keras 3 (3.15, TF 2.21) cannot fit under a multi-worker MultiWorkerMirroredStrategy: it reduces
the first batch (x, y) as one value and reduces scalar logs along axis 0, and both raise
(keras-team/keras#20585, tensorflow/tensorflow#72388). This loop uses only public tf.distribute
APIs: a sharded distributed dataset, strategy.run of a GradientTape step, and the Keras optimizer,
which all-reduces gradients across workers in replica context. Callbacks (progress, EarlyStopping,
ModelCheckpoint, pruning) are driven through a CallbackList, with logs computed on each worker's
identical copy of the weights, so every worker takes the same decisions.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from models.data import Dataset
from models.scoring import metric_name, score

PER_EXAMPLE_LOSSES = {
    "classification": lambda: keras.losses.SparseCategoricalCrossentropy(reduction=None),
    "binary": lambda: keras.losses.BinaryCrossentropy(reduction=None),
    "regression": lambda: keras.losses.MeanSquaredError(reduction=None),
}


def _distributed_batches(data: Dataset, batch_size: int, seed: int, strategy: tf.distribute.Strategy):
    """Shuffled global batches of the training split, sharded by element across the workers."""
    dataset = tf.data.Dataset.from_tensor_slices((data.x_train, data.y_train))
    dataset = dataset.shuffle(len(data.x_train), seed=seed, reshuffle_each_iteration=True)
    # Equal step counts on every worker: a ragged last batch would leave one worker waiting in a collective.
    dataset = dataset.batch(batch_size, drop_remainder=True)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return strategy.experimental_distribute_dataset(dataset.with_options(options))


def _train_step(model: keras.Model, strategy: tf.distribute.Strategy, task: str, batch_size: int):
    loss_fn = PER_EXAMPLE_LOSSES[task]()

    def step(x, y):
        with tf.GradientTape() as tape:
            predictions = model(x, training=True)
            if task != "classification":
                y = tf.reshape(tf.cast(y, predictions.dtype), tf.shape(predictions))
            loss = tf.nn.compute_average_loss(loss_fn(y, predictions), global_batch_size=batch_size)
            if model.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
        gradients = tape.gradient(loss, model.trainable_variables)
        model.optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
        return loss

    @tf.function
    def train_step(batch):
        per_replica = strategy.run(step, args=batch)
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    return train_step


def _split_logs(model: keras.Model, data: Dataset, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(loss, metric) of the local weights on one split; no collectives, so every worker can run it."""
    outputs = np.concatenate([keras.ops.convert_to_numpy(model(x[i : i + 512], training=False))
                              for i in range(0, len(x), 512)])
    targets = y if data.task == "classification" else y.reshape(outputs.shape).astype(np.float32)
    loss = float(np.mean(keras.ops.convert_to_numpy(PER_EXAMPLE_LOSSES[data.task]()(targets, outputs))))
    return loss, score(data.task, outputs, y)


def fit_multiworker(model: keras.Model, data: Dataset, *, epochs: int, batch_size: int, seed: int,
                    callbacks: list[keras.callbacks.Callback]) -> dict:
    """Train model (built and compiled inside strategy.scope()) for `epochs`; return a Keras-style history.

    NOTE: every worker must call this with the same arguments; it blocks in collectives until all do.
    """
    strategy = model.distribute_strategy
    with strategy.scope():
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
    batches = _distributed_batches(data, batch_size, seed, strategy)
    train_step = _train_step(model, strategy, data.task, batch_size)
    callback_list = keras.callbacks.CallbackList(callbacks, model=model)
    history: dict[str, list[float]] = {}
    metric = metric_name(data.task)
    model.stop_training = False
    callback_list.on_train_begin()
    for epoch in range(epochs):
        callback_list.on_epoch_begin(epoch)
        losses = []
        for step, batch in enumerate(batches):
            callback_list.on_train_batch_begin(step)
            losses.append(float(train_step(batch)))
            callback_list.on_train_batch_end(step)
        _, train_metric = _split_logs(model, data, data.x_train, data.y_train)
        val_loss, val_metric = _split_logs(model, data, data.x_val, data.y_val)
        logs = {"loss": float(np.mean(losses)), metric: train_metric, "val_loss": val_loss, f"val_{metric}": val_metric}
        for key, value in logs.items():
            history.setdefault(key, []).append(value)
        callback_list.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    callback_list.on_train_end()
    return history
