"""The magnitude-pruning callback and its polynomial schedule."""

from __future__ import annotations

import itertools

import keras
import numpy as np
import pytest

from models.pruning import MagnitudePruning, achieved_sparsity, magnitude_mask, polynomial_sparsity


def test_schedule_rises_monotonically_to_the_target():
    values = [polynomial_sparsity(step, 0.8, 100) for step in range(0, 121, 10)]
    assert values[0] == 0.0
    assert all(a <= b for a, b in itertools.pairwise(values))
    assert values[10] == pytest.approx(0.8) and values[-1] == 0.8
    assert values[3] > 0.8 * 0.3  # front-loaded: most pruning happens early, the end is gentle


def test_mask_zeroes_exactly_the_smallest_weights():
    weights = np.array([[0.5, -0.1], [0.05, -2.0]], dtype=np.float32)
    mask = magnitude_mask(weights, 0.5)
    assert mask.tolist() == [[1, 0], [0, 1]]
    assert magnitude_mask(weights, 0.0).sum() == 4


def test_callback_prunes_to_target_and_keeps_weights_at_zero():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    x = np.random.default_rng(0).normal(size=(256, 8)).astype(np.float32)
    y = np.stack([x[:, 0], x[:, 1] - x[:, 2]], axis=1)
    callback = MagnitudePruning(0.75, end_step=20, frequency=5)
    model.fit(x, y, epochs=4, batch_size=32, verbose=0, callbacks=[callback])
    sparsity, weights = achieved_sparsity(model)
    assert weights == 8 * 32 + 32 * 2
    assert sparsity == pytest.approx(0.75, abs=0.01)
    zeros = [k.numpy() == 0 for k in (layer.kernel for layer in model.layers)]
    model.fit(x, y, epochs=1, batch_size=32, verbose=0, callbacks=[callback])  # masks still held
    assert all(np.all(layer.kernel.numpy()[z] == 0) for layer, z in zip(model.layers, zeros, strict=True))


def test_callback_rejects_bad_sparsity():
    with pytest.raises(ValueError, match="sparsity"):
        MagnitudePruning(1.0, end_step=10)
