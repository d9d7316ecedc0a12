"""Data loading and validation: pure numpy, no TensorFlow."""

from __future__ import annotations

import numpy as np
import pytest

from models.data import class_labels, features, fingerprint, make_dataset, read_table
from models.errors import TrainerError
from models.scoring import gate, score


def test_csv_reads_features_and_label_column(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("a,label,b\n1,0,2\n3,1,4\n")
    x, y = read_table(path)
    assert x.tolist() == [[1, 2], [3, 4]] and y.tolist() == [0, 1]


def test_csv_label_defaults_to_last_column_and_can_be_named(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("a,b,target\n1,2,0\n3,4,1\n")
    assert read_table(path)[1].tolist() == [0, 1]
    assert read_table(path, "a")[1].tolist() == [1, 3]


@pytest.mark.parametrize(
    ("content", "message"),
    [("a,b\n1,x\n", "line 2: 'x' is not a number"), ("a,b\n1,2,3\n", "line 2: 3 fields"), ("a,b\n", "header row")],
)
def test_malformed_csv_names_the_problem(tmp_path, content, message):
    path = tmp_path / "d.csv"
    path.write_text(content)
    with pytest.raises(TrainerError, match=message):
        read_table(path)


def test_missing_file_and_wrong_suffix(tmp_path):
    with pytest.raises(TrainerError, match="not found"):
        read_table(tmp_path / "nope.csv")
    other = tmp_path / "d.json"
    other.write_text("{}")
    with pytest.raises(TrainerError, match="unsupported data file type"):
        read_table(other)


def test_npz_needs_x_and_y_and_matching_rows(tmp_path):
    np.savez(tmp_path / "a.npz", x=np.zeros((3, 2)))
    with pytest.raises(TrainerError, match="missing \\['y'\\]"):
        read_table(tmp_path / "a.npz")
    np.savez(tmp_path / "b.npz", x=np.zeros((3, 2)), y=np.zeros(2))
    with pytest.raises(TrainerError, match="3 rows but 'y' has 2"):
        read_table(tmp_path / "b.npz")
    (tmp_path / "c.npz").write_bytes(b"not a zip at all")
    with pytest.raises(TrainerError, match="not a readable NPZ"):
        read_table(tmp_path / "c.npz")


def test_labels_out_of_range_and_non_integer():
    assert class_labels(np.array([0.0, 2.0]), 3, "f").dtype == np.int32
    with pytest.raises(TrainerError, match=r"label 3 out of range \(expected 0\.\.2\)"):
        class_labels(np.array([0, 3]), 3, "f")
    with pytest.raises(TrainerError, match="label -1 out of range"):
        class_labels(np.array([0, -1]), None, "f")
    with pytest.raises(TrainerError, match="integer class ids"):
        class_labels(np.array([0.5]), 3, "f")


def test_feature_shape_mismatch():
    assert features(np.zeros((2, 64)), (8, 8, 1), "f").shape == (2, 8, 8, 1)
    with pytest.raises(TrainerError, match="shape mismatch"):
        features(np.zeros((2, 49)), (8, 8, 1), "f")


def test_splits_are_stratified_disjoint_and_seeded():
    x = np.arange(200, dtype=np.float32).reshape(100, 2)
    y = np.repeat([0, 1], 50)
    first = make_dataset(x, y, task="classification", input_name="f", source="s", validation_split=0.2, seed=3)
    again = make_dataset(x, y, task="classification", input_name="f", source="s", validation_split=0.2, seed=3)
    assert (len(first.x_train), len(first.x_val), len(first.x_test)) == (64, 16, 20)
    assert np.array_equal(first.x_test, again.x_test)
    assert np.mean(first.y_test) == 0.5
    rows = {tuple(r) for split in (first.x_train, first.x_val, first.x_test) for r in split}
    assert len(rows) == 100
    assert first.fingerprint == fingerprint(x, y) != fingerprint(x, y[::-1])


def test_score_and_gate():
    assert score("classification", np.array([[0.9, 0.1], [0.2, 0.8]]), np.array([0, 0])) == 0.5
    assert score("binary", np.array([[0.7], [0.2]]), np.array([1, 0])) == 1.0
    assert score("regression", np.array([[1.0], [3.0]]), np.array([1.0, 1.0])) == 2.0
    assert gate("classification", 0.97, 0.97, 0.0) is None
    assert gate("classification", 0.97, 0.965, 1.0) is None
    assert "2.00 points below" in gate("classification", 0.97, 0.95, 1.0)
    assert "above the SavedModel" in gate("regression", 1.0, 1.02, 1.0)
    assert gate("regression", 1.0, 1.0 + 1e-7, 0.0) is None  # float noise between runtimes
    assert gate("regression", 1.0, 1.001, 0.0) is not None
