"""Data for the recipes: bundled scikit-learn sets, a generated sequence task, and user CSV/NPZ files.

Pure numpy (no TensorFlow), so bad input is reported before the slow TensorFlow import.
Every problem a user can cause raises TrainerError with a one-line message.
"""

from __future__ import annotations

import csv
import hashlib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models.errors import TrainerError

TEST_FRACTION = 0.2
OUTPUT_NAMES = {"classification": "probabilities", "binary": "probability", "regression": "prediction"}


@dataclass
class Dataset:
    """Train/validation/test splits plus what the model card needs to know about them."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    task: str  # classification | binary | regression
    input_name: str
    source: str
    fingerprint: str
    num_classes: int | None = None
    info: dict = field(default_factory=dict)

    @property
    def output_name(self) -> str:
        """The serving signature's output name for this task."""
        return OUTPUT_NAMES[self.task]

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One example's shape (no batch dimension)."""
        return tuple(self.x_train.shape[1:])

    def card_info(self) -> dict:
        """The `data` section of the model card."""
        return {"source": self.source, "fingerprint": self.fingerprint, "n_train": len(self.x_train),
                "n_validation": len(self.x_val), "n_test": len(self.x_test), **self.info}


def fingerprint(x: np.ndarray, y: np.ndarray) -> str:
    """A sha256 over the arrays' dtypes, shapes and bytes: same data, same fingerprint."""
    digest = hashlib.sha256()
    for array in (np.ascontiguousarray(x), np.ascontiguousarray(y)):
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    return "sha256:" + digest.hexdigest()


def _split_indices(y: np.ndarray, fraction: float, stratify: bool, rng: np.random.Generator) -> tuple:
    """Shuffle, then hold out `fraction` of the rows (per class when stratifying)."""
    groups = [np.flatnonzero(y == label) for label in np.unique(y)] if stratify else [np.arange(len(y))]
    held, kept = [], []
    for group in groups:
        shuffled = rng.permutation(group)
        n_held = round(len(shuffled) * fraction)
        held.append(shuffled[:n_held])
        kept.append(shuffled[n_held:])
    return rng.permutation(np.concatenate(kept)), rng.permutation(np.concatenate(held))


def make_dataset(x: np.ndarray, y: np.ndarray, *, task: str, input_name: str, source: str,
                 validation_split: float, seed: int, num_classes: int | None = None,
                 info: dict | None = None) -> Dataset:
    """Split (x, y) into train/validation/test with a seeded shuffle (stratified for classes).

    Raises TrainerError when there are too few rows to split.
    """
    if len(x) < 10:
        raise TrainerError(f"need at least 10 examples to make train/validation/test splits, got {len(x)}")
    if not 0.0 < validation_split < 0.5:
        raise TrainerError(f"--validation-split must be in (0, 0.5), got {validation_split}")
    rng = np.random.default_rng(seed)
    stratify = task != "regression"
    rest, test = _split_indices(y, TEST_FRACTION, stratify, rng)
    train_rel, val_rel = _split_indices(y[rest], validation_split, stratify, rng)
    train, val = rest[train_rel], rest[val_rel]
    return Dataset(x[train], y[train], x[val], y[val], x[test], y[test], task=task, input_name=input_name,
                   source=source, fingerprint=fingerprint(x, y), num_classes=num_classes, info=info or {})


def read_table(path: Path, label_column: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read features and labels from a .csv (header row) or .npz (arrays `x` and `y`) file.

    In a CSV the label is the column named by label_column, else a column named `label`, else the last.
    Returns (x float32/int array, y array). Raises TrainerError on a missing or malformed file.
    """
    if not path.is_file():
        raise TrainerError(f"data file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _read_csv(path, label_column)
    if suffix == ".npz":
        return _read_npz(path)
    raise TrainerError(f"unsupported data file type {suffix!r} for {path} (use .csv or .npz)")


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = {"x", "y"} - set(archive.files)
            if missing:
                raise TrainerError(f"{path}: NPZ file needs arrays 'x' and 'y', missing {sorted(missing)}")
            x, y = archive["x"], archive["y"]
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise TrainerError(f"{path}: not a readable NPZ file ({exc})") from None
    if x.dtype.kind not in "biuf" or y.dtype.kind not in "biuf":
        raise TrainerError(f"{path}: arrays 'x' and 'y' must be numeric, got {x.dtype} and {y.dtype}")
    if len(x) != len(y):
        raise TrainerError(f"{path}: 'x' has {len(x)} rows but 'y' has {len(y)}")
    return x, y


def _read_csv(path: Path, label_column: str | None) -> tuple[np.ndarray, np.ndarray]:
    try:
        with path.open(newline="") as handle:
            rows = [row for row in csv.reader(handle) if row]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise TrainerError(f"{path}: cannot read CSV ({exc})") from None
    if len(rows) < 2:
        raise TrainerError(f"{path}: CSV needs a header row and at least one data row")
    header = [name.strip() for name in rows[0]]
    wanted = label_column or ("label" if "label" in header else header[-1])
    if wanted not in header:
        raise TrainerError(f"{path}: no label column {wanted!r} in header {header}")
    label_index = header.index(wanted)
    values = np.empty((len(rows) - 1, len(header)), dtype=np.float64)
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise TrainerError(f"{path} line {line}: {len(row)} fields, header has {len(header)}")
        try:
            values[line - 2] = [float(cell) for cell in row]
        except ValueError:
            bad = next(cell for cell in row if not _is_number(cell))
            raise TrainerError(f"{path} line {line}: {bad!r} is not a number") from None
    x = np.delete(values, label_index, axis=1).astype(np.float32)
    return x, values[:, label_index]


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def class_labels(y: np.ndarray, num_classes: int | None, where: str) -> np.ndarray:
    """Check that y holds integer class ids in [0, num_classes) (any non-negative ids when None).

    Returns y as int32. Raises TrainerError naming the first offending label.
    """
    y = np.asarray(y)
    if y.ndim != 1:
        raise TrainerError(f"{where}: labels must be one value per row, got shape {y.shape}")
    if not np.all(np.isfinite(y)) or not np.all(np.equal(np.mod(y, 1), 0)):
        raise TrainerError(f"{where}: labels must be integer class ids")
    limit = num_classes if num_classes is not None else np.inf
    bad = y[(y < 0) | (y >= limit)]
    if bad.size:
        allowed = f"0..{num_classes - 1}" if num_classes is not None else "non-negative"
        raise TrainerError(f"{where}: label {bad[0]:g} out of range (expected {allowed})")
    return y.astype(np.int32)


def features(x: np.ndarray, shape: tuple[int, ...], where: str) -> np.ndarray:
    """Reshape rows of x to `shape` (same number of values) or raise a shape-mismatch TrainerError."""
    x = np.asarray(x)
    per_row = int(np.prod(x.shape[1:])) if x.ndim > 1 else 1
    if x.ndim < 2 or per_row != int(np.prod(shape)):
        raise TrainerError(f"{where}: shape mismatch, each example must have shape {shape}, got {x.shape[1:]}")
    if not np.all(np.isfinite(x)):
        raise TrainerError(f"{where}: features contain NaN or infinite values")
    return x.reshape((len(x), *shape)).astype(np.float32)


def load_iris() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled iris data: 150 x 4 float32 features, labels 0..2."""
    from sklearn.datasets import load_iris as sk_load_iris

    bunch = sk_load_iris()
    return bunch.data.astype(np.float32), bunch.target.astype(np.int32)


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 digits: 1797 x 8 x 8 x 1 float32 pixels scaled to 0..1, labels 0..9."""
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    return (bunch.images / 16.0).astype(np.float32)[..., None], bunch.target.astype(np.int32)
