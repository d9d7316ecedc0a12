"""Magnitude pruning for Keras 3 models: a polynomial sparsity schedule applied by a callback.

tensorflow-model-optimization does not work with Keras 3 (it needs the legacy tf_keras package and
fails to import beside Keras 3), so this is a small replacement with the same idea: during a
fine-tuning phase, every `frequency` steps the smallest-magnitude kernel weights of each Dense and
Conv layer are zeroed, following sparsity(t) = target * (1 - (1 - t/end)^3), and held at zero
after every batch so the optimizer cannot revive them.
"""

from __future__ import annotations

import math

import keras
import numpy as np

PRUNABLE_LAYERS = (keras.layers.Dense, keras.layers.Conv1D, keras.layers.Conv2D)


def polynomial_sparsity(step: int, target: float, end_step: int, power: int = 3) -> float:
    """The schedule's sparsity at `step`: 0 at step 0, rising fast then slowly to `target` at end_step."""
    if end_step <= 0 or step >= end_step:
        return target
    progress = max(step, 0) / end_step
    return target * (1.0 - (1.0 - progress) ** power)


def prunable_kernels(model: keras.Model) -> list:
    """The kernel variables of the trainable Dense/Conv layers of model (nested models included)."""
    return [layer.kernel for layer in _walk(model) if isinstance(layer, PRUNABLE_LAYERS) and layer.trainable]


def _walk(model: keras.Layer):
    for layer in getattr(model, "layers", []):
        yield layer
        yield from _walk(layer)


def magnitude_mask(weights: np.ndarray, sparsity: float) -> np.ndarray:
    """A 0/1 mask that zeroes the round(sparsity * size) smallest-magnitude weights."""
    n_zero = round(sparsity * weights.size)
    mask = np.ones(weights.size, dtype=weights.dtype)
    if n_zero > 0:
        mask[np.argsort(np.abs(weights).ravel(), kind="stable")[:n_zero]] = 0
    return mask.reshape(weights.shape)


def achieved_sparsity(model: keras.Model) -> tuple[float, int]:
    """(fraction of exactly-zero weights, number of weights) over the model's prunable kernels."""
    arrays = [np.asarray(kernel.numpy()) for kernel in prunable_kernels(model)]
    total = sum(array.size for array in arrays)
    zeros = sum(int(np.count_nonzero(array == 0)) for array in arrays)
    return (zeros / total if total else 0.0), total


class MagnitudePruning(keras.callbacks.Callback):
    """Gradually prunes the model's Dense/Conv kernels to `target_sparsity` by `end_step` (batches).

    Takes the target sparsity in [0, 1), the step at which it is reached, and how often (in steps)
    the masks are recomputed. Raises ValueError for a sparsity outside [0, 1).
    NOTE: masks are applied from the callback (cross-replica context), so it works under tf.distribute.
    """

    def __init__(self, target_sparsity: float, end_step: int, frequency: int = 10) -> None:
        super().__init__()
        if not 0.0 <= target_sparsity < 1.0:
            raise ValueError(f"target sparsity must be in [0, 1), got {target_sparsity}")
        self.target_sparsity = target_sparsity
        self.end_step = max(1, end_step)
        self.frequency = max(1, frequency)
        self.step = 0
        self._kernels: list = []
        self._masks: list[np.ndarray] = []

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._kernels = prunable_kernels(self.model)
        # A later fit() with the same callback resumes the schedule where it stopped.
        sparsity = polynomial_sparsity(self.step, self.target_sparsity, self.end_step) if self.step else 0.0
        self._masks = [magnitude_mask(np.asarray(k.numpy()), sparsity) for k in self._kernels]

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.step += 1
        if self.step <= self.end_step and (self.step % self.frequency == 0 or self.step == self.end_step):
            sparsity = polynomial_sparsity(self.step, self.target_sparsity, self.end_step)
            self._masks = [magnitude_mask(np.asarray(k.numpy()), sparsity) for k in self._kernels]
        self._apply()

    def on_train_end(self, logs: dict | None = None) -> None:
        # A phase shorter than the schedule still ends at the target sparsity.
        self._masks = [magnitude_mask(np.asarray(k.numpy()), self.target_sparsity) for k in self._kernels]
        self._apply()

    def _apply(self) -> None:
        for kernel, mask in zip(self._kernels, self._masks, strict=True):
            kernel.assign(kernel.numpy() * mask)


def prune(trained, data, opts, strategy, reporter):
    """Fine-tune a copy of trained.model for opts.prune_epochs while pruning it to opts.prune sparsity.

    Takes and returns a TrainedModel (the model is replaced; info["pruning"] records the target and
    achieved sparsity). The schedule reaches the target at 70% of the phase so the rest can recover.
    """
    from models.training import compile_model, detach, fit

    with strategy.scope():
        model = detach(trained.model)
        compile_model(model, data.task, opts.optimizer, trained.info.get("prune_learning_rate", opts.learning_rate))
    total_steps = math.ceil(len(data.x_train) / opts.batch_size) * opts.prune_epochs
    callback = MagnitudePruning(opts.prune, end_step=int(total_steps * 0.7), frequency=max(1, total_steps // 20))
    fit(model, data, opts, reporter, phase="prune", epochs=opts.prune_epochs, callbacks=[callback])
    sparsity, weights = achieved_sparsity(model)
    reporter.progress(f"pruned: sparsity {sparsity:.4f} over {weights} Dense/Conv kernel weights")
    trained.model = model
    trained.info["pruning"] = {"target_sparsity": opts.prune, "achieved_sparsity": sparsity, "weights": weights,
                               "epochs": opts.prune_epochs, "schedule": "polynomial (power 3), magnitude"}
    return trained
