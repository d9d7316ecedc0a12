"""The command line: help, bad input (one error line, non-zero exit, empty repository), tabular data."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from models.cli import build_parser, main
from models.recipes import RECIPES


def _main(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def test_help_documents_every_option():
    text = build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    for flag in ("--repository", "--model-name", "--version", "--epochs", "--batch-size", "--learning-rate",
                 "--optimizer", "--validation-split", "--seed", "--data", "--strategy", "--quiet", "--l1", "--l2",
                 "--dropout", "--early-stopping-patience", "--monitor", "--checkpoint-dir", "--prune",
                 "--max-accuracy-drop", "--variants", "--base-model", "--fine-tune-layers", "--task", "--rnn"):
        assert flag in text, flag
    for recipe in ("iris", "digits", "sequence", "transfer", "tabular"):
        assert f"\n  {recipe} " in text


def _recipe_lines(help_text: str) -> list[str]:
    """The lines under `recipes:` up to the next blank line."""
    lines = help_text.splitlines()
    start = lines.index("recipes:") + 1
    return lines[start:lines.index("", start)]


def test_real_subprocess_top_level_help_lists_every_recipe_in_one_line_without_tensorflow(cli):
    proc = cli("--help", env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert proc.returncode == 0, proc.stderr
    lines = _recipe_lines(proc.stdout)
    assert [line.split()[0] for line in lines] == list(RECIPES)
    for line, recipe in zip(lines, RECIPES.values(), strict=True):
        assert recipe.summary.strip() and line.startswith("  ") and line.endswith(f"  {recipe.summary}")
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "models.recipes" in imported and "tensorflow" not in imported  # help stays fast: no TensorFlow


def test_train_help_lists_the_same_recipe_lines():
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        main(["train", "--help"])
    assert _recipe_lines(out.getvalue()) == _recipe_lines(build_parser().format_help())


def test_real_subprocess_unknown_recipe_is_one_line_and_exit_2(cli, tmp_path):
    proc = cli("train", "resnet", "--repository", tmp_path / "repo")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: unknown recipe 'resnet' (choose from digits, iris, sequence, tabular, transfer)")
    assert "Traceback" not in proc.stderr and not (tmp_path / "repo").exists()


def _bad_inputs(tmp_path):
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("a,b,c,d,label\n1,2,3,4,0\n1,2,oops,4,1\n")
    out_of_range = tmp_path / "range.csv"
    out_of_range.write_text("a,b,c,d,label\n" + "\n".join(f"{i},1,2,3,{i % 4}" for i in range(20)) + "\n")
    small_images = tmp_path / "small.npz"
    np.savez(small_images, x=np.zeros((20, 7, 7)), y=np.arange(20) % 10)
    return [
        (("iris", "--data", tmp_path / "missing.csv"), "error: data file not found"),
        (("iris", "--data", bad_csv), "line 3: 'oops' is not a number"),
        (("iris", "--data", out_of_range), "label 3 out of range (expected 0..2)"),
        (("digits", "--data", small_images), "shape mismatch, each example must have shape (8, 8, 1), got (7, 7)"),
        (("tabular",), "needs --data"),
        (("iris", "--model-name", "../evil"), "invalid model name"),
        (("iris", "--variants", "float32,int4"), "unknown TFLite variant(s) int4"),
        (("iris", "--prune", "1.5"), "--prune must be a sparsity in [0, 1)"),
    ]


def test_bad_inputs_give_one_clear_line_and_leave_the_repository_empty(tmp_path):
    repo = tmp_path / "repo"
    for argv, message in _bad_inputs(tmp_path):
        code, _, err = _main("train", *argv, "--repository", repo)
        assert code == 2, argv
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], (argv, err)
        assert not repo.exists() or list(repo.iterdir()) == [], argv


@pytest.mark.slow
def test_transfer_base_model_shape_mismatch(tmp_path):
    import keras

    base = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(3),
                             keras.layers.Dense(2)])
    base.save(tmp_path / "base.keras")
    repo = tmp_path / "repo"
    code, _, err = _main("train", "transfer", "--base-model", tmp_path / "base.keras", "--repository", repo)
    assert code == 2
    assert err.strip().splitlines()[-1].startswith("error: shape mismatch: base model")
    assert not repo.exists() or list(repo.iterdir()) == []


def test_tabular_csv_classification(train_model, tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(240, 3))
    y = (x[:, 0] + x[:, 1] > 0).astype(int) + (x[:, 2] > 1).astype(int)
    path = tmp_path / "t.csv"
    np.savetxt(path, np.column_stack([x, y]), delimiter=",", header="f1,f2,f3,label", comments="", fmt="%.5f")
    run = train_model("tabular", "--data", path, "--repository", tmp_path / "repo", "--variants", "float32",
                      "--quiet", "--model-name", "tab", "--epochs", "15")
    card = run.card
    assert card["task"] == "classification" and card["num_classes"] == 3
    assert card["signature"]["outputs"] == {"probabilities": {"dtype": "float32", "shape": [None, 3]}}
    assert card["variants"]["savedmodel"]["accuracy"] >= 0.8
    assert "[train] epoch" not in run.stdout and "summary: tab version 1" in run.stdout


def test_tabular_npz_regression_and_quality_gate_refusal(train_model, tmp_path):
    """A threshold of 0 refuses the int8 variant: quantizing the output always costs some MSE."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 4)).astype(np.float32)
    y = (2 * x[:, 0] - x[:, 1] + 0.5 * x[:, 2] * x[:, 3]).astype(np.float32)
    np.savez(tmp_path / "r.npz", x=x, y=y)
    run = train_model("tabular", "--task", "regression", "--data", tmp_path / "r.npz", "--repository",
                      tmp_path / "repo", "--variants", "float32,int8", "--max-accuracy-drop", "0", "--quiet",
                      "--epochs", "20")
    card, variants = run.card, run.card["variants"]
    assert card["task"] == "regression" and card["quality_gate"] == {"max_mse_increase_percent": 0.0}
    assert variants["savedmodel"]["mse"] < 0.5 * float(np.var(y))
    assert variants["float32"]["published"] and (run.path / "tflite" / "float32.tflite").is_file()
    int8 = variants["int8"]
    assert not int8["published"] and "above the SavedModel" in int8["refused_reason"]
    assert not (run.path / "tflite" / "int8.tflite").exists()
    assert int8["refused_reason"] in run.stdout  # the summary says why
