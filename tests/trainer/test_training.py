"""Training features: reproducibility, regularization and callbacks, pruning, the GRU variant."""

from __future__ import annotations

import keras
import numpy as np
import pytest


def test_same_seed_same_accuracy(train_model, tmp_path):
    argv = ("iris", "--repository", tmp_path, "--epochs", "15", "--seed", "4", "--optimizer", "sgd", "--variants",
            "none", "--quiet")
    runs = [train_model(*argv, "--model-name", f"r{i}") for i in range(2)]
    first, second = (run.card for run in runs)
    assert abs(first["variants"]["savedmodel"]["accuracy"] - second["variants"]["savedmodel"]["accuracy"]) <= 0.01
    assert first["data"]["fingerprint"] == second["data"]["fingerprint"]
    np.testing.assert_allclose(first["samples"]["outputs"]["probabilities"],
                               second["samples"]["outputs"]["probabilities"], atol=1e-3)


def test_regularizers_early_stopping_and_checkpoint(train_model, tmp_path):
    checkpoints = tmp_path / "ckpt"
    run = train_model("iris", "--repository", tmp_path / "repo", "--epochs", "60", "--l1", "1e-4", "--l2", "1e-3",
                      "--dropout", "0.1", "--early-stopping-patience", "3", "--checkpoint-dir", checkpoints,
                      "--variants", "none", "--quiet")
    dense = [layer for layer in run.model.layers if isinstance(layer, keras.layers.Dense)]
    assert all(isinstance(layer.kernel_regularizer, keras.regularizers.L1L2) for layer in dense)
    assert any(isinstance(layer, keras.layers.Dropout) for layer in run.model.layers)
    assert run.card["training"]["epochs_run"] < 60  # EarlyStopping ended it
    assert run.card["hyperparameters"]["early_stopping_patience"] == 3
    best = keras.models.load_model(checkpoints / "iris-train-best.keras")
    assert best.input_shape == (None, 4)


@pytest.mark.slow
def test_pruning_reaches_target_and_shrinks_gzip(train_model, tmp_path, digits_run):
    run = train_model("digits", "--repository", tmp_path, "--epochs", "4", "--prune", "0.8", "--prune-epochs", "2",
                      "--variants", "float32", "--quiet")
    pruning = run.card["pruning"]
    assert pruning["achieved_sparsity"] == pytest.approx(0.8, abs=0.01) and pruning["target_sparsity"] == 0.8
    pruned, dense = run.card["variants"]["float32"], digits_run.card["variants"]["float32"]
    assert pruned["size_bytes"] == pytest.approx(dense["size_bytes"], rel=0.01)  # zeros still take room...
    assert pruned["gzip_size_bytes"] < 0.6 * dense["gzip_size_bytes"]  # ...but compress away
    assert "pruning: target sparsity 0.80, achieved 0.8" in run.stdout


@pytest.mark.slow
def test_sequence_with_gru_converts(train_model, tmp_path):
    run = train_model("sequence", "--rnn", "gru", "--repository", tmp_path, "--epochs", "1", "--variants",
                      "float32", "--quiet")
    assert any(isinstance(layer, keras.layers.GRU) for layer in run.model.layers)
    assert run.card["variants"]["float32"]["published"]
