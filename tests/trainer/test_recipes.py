"""Acceptance: each recipe trains to its target on the held-out split and publishes a complete version."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from models.evaluate import LiteRTModel

CARD_KEYS = {"schema_version", "name", "version", "recipe", "task", "created_at", "hyperparameters", "seed", "data",
             "signature", "variants", "quality_gate", "samples"}


def test_iris_reaches_090(iris_run):
    assert iris_run.card["variants"]["savedmodel"]["accuracy"] >= 0.90
    assert "[train] epoch" in iris_run.stdout and "val_accuracy" in iris_run.stdout
    assert "summary: iris version 1" in iris_run.stdout


def test_digits_reaches_095(digits_run):
    assert digits_run.card["variants"]["savedmodel"]["accuracy"] >= 0.95


def test_sequence_reaches_085(sequence_run):
    card = sequence_run.card
    assert card["task"] == "binary" and card["variants"]["savedmodel"]["accuracy"] >= 0.85
    assert card["signature"]["inputs"] == {"tokens": {"dtype": "int32", "shape": [None, 24]}}
    assert card["signature"]["outputs"] == {"probability": {"dtype": "float32", "shape": [None, 1]}}
    assert card["variants"]["float32"]["published"], card["variants"]["float32"]


def test_transfer_fine_tuning_does_not_lose_to_the_head_alone(transfer_run):
    phases = transfer_run.card["phases"]
    assert phases["fine_tuned"] >= phases["head_only"]
    assert "head only (base frozen): test accuracy" in transfer_run.stdout
    assert "fine-tuned (unfrozen:" in transfer_run.stdout


@pytest.mark.slow
def test_transfer_from_a_user_base_model(transfer_run, train_model, tmp_path):
    base = transfer_run.path.parents[2] / "checkpoints" / "transfer-base.keras"
    assert base.is_file()  # the base the first run trained, saved by --checkpoint-dir
    run = train_model("transfer", "--base-model", base, "--repository", tmp_path, "--epochs", "3",
                      "--fine-tune-epochs", "1", "--fine-tune-layers", "1", "--variants", "none", "--quiet")
    assert "base_classes_0_4" not in run.card["phases"] and f"base model: {base}" in run.card["notes"]
    assert run.card["hyperparameters"]["fine_tune_layers"] == 1


def test_digits_int8_is_within_one_point_and_under_30_percent(digits_run):
    variants = digits_run.card["variants"]
    int8, float32 = variants["int8"], variants["float32"]
    assert int8["published"] and int8["interface"] == "int8"
    assert variants["savedmodel"]["accuracy"] - int8["accuracy"] <= 0.01
    assert int8["size_bytes"] <= 0.30 * float32["size_bytes"]
    assert (digits_run.path / "tflite" / "int8.tflite").stat().st_size == int8["size_bytes"]
    assert int8["io"]["inputs"]["pixels"]["dtype"] == "int8" and "scale" in int8["io"]["inputs"]["pixels"]


def test_version_folder_follows_the_repository_contract(digits_run):
    root = digits_run.path
    assert root.name == "1" and (root / "saved_model.pb").is_file() and (root / "variables").is_dir()
    assert sorted(p.name for p in (root / "tflite").iterdir()) == [
        "dynamic.tflite", "float16.tflite", "float32.tflite", "int8.tflite"]
    assert not [p for p in root.parent.iterdir() if p.name.startswith(".tmp")]
    card = json.loads((root / "model_card.json").read_text())
    assert set(card) >= CARD_KEYS and card["schema_version"] == 1 and card["version"] == 1
    assert card["data"]["fingerprint"].startswith("sha256:")
    assert card["data"]["n_train"] + card["data"]["n_validation"] + card["data"]["n_test"] == 1797
    for name, variant in card["variants"].items():
        assert variant["published"] and variant["latency_ms_batch1"] > 0, name
        assert 0 < variant["gzip_size_bytes"] <= variant["size_bytes"] * 1.01, name
    assert card["variants"]["dynamic"]["interface"] == "float"


def test_savedmodel_signature_equals_in_process_predictions(digits_run):
    card = digits_run.card
    assert card["signature"] == {
        "name": "serving_default",
        "inputs": {"pixels": {"dtype": "float32", "shape": [None, 8, 8, 1]}},
        "outputs": {"probabilities": {"dtype": "float32", "shape": [None, 10]}},
    }
    samples = np.array(card["samples"]["inputs"]["pixels"], dtype=np.float32)
    assert samples.shape == (4, 8, 8, 1)
    signature = tf.saved_model.load(str(digits_run.path)).signatures["serving_default"]
    served = signature(pixels=tf.constant(samples))["probabilities"].numpy()
    np.testing.assert_allclose(served, digits_run.model.predict(samples, verbose=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(served, np.array(card["samples"]["outputs"]["probabilities"]), rtol=1e-5, atol=1e-6)
    batch = np.repeat(samples, 3, axis=0)  # the batch dimension is dynamic
    assert signature(pixels=tf.constant(batch))["probabilities"].shape == (12, 10)


@pytest.mark.parametrize("variant", ["float32", "float16", "dynamic", "int8"])
def test_tflite_variants_use_the_savedmodel_names(digits_run, variant):
    content = (digits_run.path / "tflite" / f"{variant}.tflite").read_bytes()
    signatures = Interpreter(model_content=content).get_signature_list()
    assert signatures == {"serving_default": {"inputs": ["pixels"], "outputs": ["probabilities"]}}
    samples = np.array(digits_run.card["samples"]["inputs"]["pixels"], dtype=np.float32)
    expected = np.array(digits_run.card["samples"]["outputs"]["probabilities"])
    outputs = LiteRTModel(content).predict({"pixels": samples})["probabilities"]
    tolerance = 1e-4 if variant == "float32" else 0.1
    np.testing.assert_allclose(outputs, expected, atol=tolerance)
    assert np.array_equal(outputs.argmax(1), expected.argmax(1))


def test_summary_table_lists_every_variant(digits_run):
    table = digits_run.stdout[digits_run.stdout.index("summary: digits"):]
    for variant in ("savedmodel", "float32", "float16", "dynamic", "int8"):
        assert f"\n{variant} " in table
    assert "latency_ms" in table and "gzip" in table
