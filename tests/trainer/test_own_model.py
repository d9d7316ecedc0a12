"""`publish`: models our trainer did not make (plain tf.keras), published with gated variants and a card."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

from contract.card import load_card
from models.cli import main as cli_main
from models.evaluate import LiteRTModel
from tests.support.foreign_models import (
    build_classifier,
    build_regression_savedmodel,
    build_two_input,
    build_unconvertible,
)


@pytest.fixture(scope="module")
def foreign(tmp_path_factory):
    folder = tmp_path_factory.mktemp("foreign")
    return {
        "two": build_two_input(folder),
        "regression": build_regression_savedmodel(folder),
        "classifier": build_classifier(folder),
        "unconvertible": build_unconvertible(folder),
    }


def publish(repository: Path, *argv) -> tuple[int, str, str]:
    """Run `publish` in-process; return (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli_main(["publish", *map(str, argv), "--repository", str(repository), "--quiet"])
    return code, out.getvalue(), err.getvalue()


def card_of(version_dir: Path) -> dict:
    return json.loads((version_dir / "model_card.json").read_text())


def test_two_input_keras_model_publishes_every_variant(foreign, tmp_path):
    two = foreign["two"]
    code, out, err = publish(tmp_path, two.path, "--model-name", "two", "--calibration-data", two.calibration)
    assert code == 0, err
    version = tmp_path / "two" / "1"
    card = card_of(version)
    assert load_card(version).published_variants == {"savedmodel", "float32", "float16", "dynamic", "int8"}
    assert card["signature"]["inputs"] == {
        "features": {"dtype": "float32", "shape": [None, 4]},
        "tokens": {"dtype": "int32", "shape": [None, 6]},
    }
    assert set(card["signature"]["outputs"]) == {"probs", "score"}
    assert "task" not in card  # outputs of unknown meaning: gated on absolute error
    assert card["quality_gate"] == {"max_abs_error": 0.1, "max_mean_abs_error": 0.02}
    assert "held-out calibration rows" in card["quality_gate_method"]
    int8 = card["variants"]["int8"]
    assert int8["interface"] == "int8" and int8["io"]["inputs"]["tokens"]["dtype"] == "int32"
    assert int8["io"]["inputs"]["features"]["dtype"] == "int8" and int8["agreement"]["rows"] == 16
    assert all(
        card["variants"][v]["size_bytes"] > 0 and card["variants"][v]["latency_ms_batch1"] > 0 for v in card["variants"]
    )
    assert card["source"]["format"] == "keras"
    assert card["source"]["sha256"] == hashlib.sha256(two.path.read_bytes()).hexdigest()
    assert {"tensorflow", "keras"} <= set(card["frameworks"])
    assert len(card["samples"]["inputs"]["tokens"]) == 4 and set(card["samples"]["outputs"]) == {"probs", "score"}
    # The published int8 file reproduces the source model on rows it never saw, within the card's tolerance.
    served = LiteRTModel((version / "tflite" / "int8.tflite").read_bytes()).predict(two.rows)
    for name, expected in two.expected.items():
        assert np.max(np.abs(served[name] - expected)) <= card["quality_gate"]["max_abs_error"]
    assert "summary: two version 1" in out and "int8" in out


def test_int8_is_refused_without_calibration_data(foreign, tmp_path):
    code, _out, err = publish(tmp_path, foreign["two"].path, "--model-name", "two", "--variants", "float32,int8")
    assert code == 0, err
    card = card_of(tmp_path / "two" / "1")
    assert card["variants"]["float32"]["published"] is True
    int8 = card["variants"]["int8"]
    assert int8["published"] is False and "--calibration-data" in int8["refused_reason"]
    assert not (tmp_path / "two" / "1" / "tflite" / "int8.tflite").exists()
    assert any("int8 not produced" in note for note in card["notes"])
    assert any("synthetic rows" in note for note in card["notes"])  # the weak gate is said, not hidden


def test_int8_is_refused_when_the_gate_is_too_strict(foreign, tmp_path):
    two = foreign["two"]
    code, out, err = publish(
        tmp_path,
        two.path,
        "--model-name",
        "two",
        "--variants",
        "int8",
        "--calibration-data",
        two.calibration,
        "--max-abs-error",
        "1e-6",
    )
    assert code == 0, err
    int8 = card_of(tmp_path / "two" / "1")["variants"]["int8"]
    assert int8["published"] is False and "max abs error" in int8["refused_reason"]
    assert int8["agreement"]["max_abs_error"] > 1e-6 and int8["size_bytes"] > 0
    assert not (tmp_path / "two" / "1" / "tflite").exists()
    assert "NO" in out


def test_regression_savedmodel(foreign, tmp_path):
    saved_model, calibration = foreign["regression"]
    code, _out, err = publish(
        tmp_path,
        saved_model,
        "--model-name",
        "reg",
        "--task",
        "regression",
        "--variants",
        "float32,int8",
        "--calibration-data",
        calibration,
        "--max-abs-error",
        "0.2",
        "--max-mean-abs-error",
        "0.05",
    )
    assert code == 0, err
    card = card_of(tmp_path / "reg" / "1")
    assert card["task"] == "regression" and card["source"]["format"] == "savedmodel"
    assert list(card["signature"]["inputs"]) == ["x"]
    assert card["data"]["calibration"]["rows"] == 60
    for variant in ("float32", "int8"):
        assert card["variants"][variant]["published"] is True, card["variants"][variant]
    assert card["variants"]["float32"]["agreement"]["max_abs_error"] < 1e-4


def test_savedmodel_signature_option_publishes_it_as_serving_default(foreign, tmp_path):
    saved_model, _ = foreign["regression"]
    code, _out, err = publish(
        tmp_path, saved_model, "--model-name", "reg", "--signature", "serve", "--variants", "float32"
    )
    assert code == 0, err
    card = card_of(tmp_path / "reg" / "1")
    assert card["signature"]["name"] == "serving_default" and card["source"]["signature"] == "serve"
    assert card["variants"]["float32"]["published"] is True


def test_classifier_with_labelled_eval_data(foreign, tmp_path):
    model, calibration, evaluation = foreign["classifier"]
    code, out, err = publish(
        tmp_path,
        model,
        "--model-name",
        "iris-own",
        "--task",
        "classification",
        "--eval-data",
        evaluation,
        "--calibration-data",
        calibration,
        "--variants",
        "float32,int8",
        "--max-accuracy-drop",
        "5",
    )
    assert code == 0, err
    card = card_of(tmp_path / "iris-own" / "1")
    assert card["task"] == "classification" and card["quality_gate"] == {"max_accuracy_drop_points": 5.0}
    assert card["quality_gate_method"].startswith("labels: accuracy")
    assert card["data"]["eval"]["rows"] == 50
    assert card["variants"]["savedmodel"]["accuracy"] > 0.6
    for variant in ("float32", "int8"):
        entry = card["variants"][variant]
        assert entry["published"] is True
        assert entry["accuracy"] >= card["variants"]["savedmodel"]["accuracy"] - 0.05
    assert "accuracy" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.keras"], "source model not found"),
        (["{two}", "--calibration-data", "{regression_csv}"], "single-input model"),
        (["{two}", "--eval-data", "{eval}"], "--eval-data needs --task"),
        (["{regression}", "--signature", "nope"], "no signature 'nope'"),
        (["{classifier}", "--task", "classification", "--eval-data", "{two_calibration}"], "no array for input"),
        (["{two}", "--variants", "int4"], "unknown TFLite variant"),
        (
            ["{lstm}", "--variants", "float32,dynamic"],
            "converter cannot take this model: conversion failed: 'tf.TensorListReserve' op",
        ),
        (["{strings}"], "input 'text' has dtype string"),
    ],
)
def test_bad_input_is_one_error_line_and_writes_nothing(foreign, tmp_path, args, message):
    two, (regression, regression_csv), (classifier, _c, evaluation) = (
        foreign["two"],
        foreign["regression"],
        foreign["classifier"],
    )
    values = {
        "two": two.path,
        "two_calibration": two.calibration,
        "regression": regression,
        "regression_csv": regression_csv,
        "classifier": classifier,
        "eval": evaluation,
        "lstm": foreign["unconvertible"][0],
        "strings": foreign["unconvertible"][1],
    }
    argv = [arg.format(**values) for arg in args]
    repository = tmp_path / "repo"
    code, _out, err = publish(repository, *argv, "--model-name", "m")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
    assert not (repository / "m").exists()


def test_cli_subprocess_exit_status(foreign, tmp_path, cli):
    result = cli("publish", foreign["two"].path, "--repository", tmp_path, "--model-name", "bad name")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: invalid model name")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_unconvertible_model_in_a_subprocess_ends_with_one_error_line(foreign, tmp_path, cli):
    lstm = foreign["unconvertible"][0]
    result = cli("publish", lstm, "--repository", tmp_path, "--model-name", "lstm", "--variants", "float32")
    assert result.returncode == 2
    assert "loc(" not in result.stderr  # the converter's MLIR dump stays out of the user's terminal
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "'tf.TensorListReserve' op" in errors[0]
    assert list(tmp_path.iterdir()) == []
