"""Input rows for publishing a model: calibration rows and labelled evaluation rows, checked against its inputs.

`.npz` files are keyed by input name (a single-input model may also use `x`); a labelled file adds
`y` (or `label`). A `.csv` file serves a single-input model: one row per line, a header row, and
for labelled data a `label` column (else the last column).
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from models.data import read_table
from models.errors import TrainerError
from models.sources import TensorSpec

Rows = dict[str, np.ndarray]
LABEL_KEYS = ("y", "label")


def load_rows(path: Path, inputs: Mapping[str, TensorSpec], *, labelled: bool) -> tuple[Rows, np.ndarray | None]:
    """(rows keyed by input name, labels or None). Raises TrainerError naming the file and the input."""
    if not path.is_file():
        raise TrainerError(f"data file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        rows, labels = _read_npz(path, inputs, labelled)
    elif suffix == ".csv":
        if len(inputs) != 1:
            raise TrainerError(
                f"{path}: a .csv file serves a single-input model; this one has inputs "
                f"{sorted(inputs)}: use an .npz file keyed by input name"
            )
        rows, labels = _read_csv(path, next(iter(inputs)), labelled)
    else:
        raise TrainerError(f"unsupported data file type {suffix!r} for {path} (use .npz or .csv)")
    rows = {name: _check(path, name, rows[name], spec) for name, spec in inputs.items()}
    counts = {name: len(value) for name, value in rows.items()} | ({"labels": len(labels)} if labelled else {})
    if len(set(counts.values())) != 1:
        raise TrainerError(f"{path}: arrays must have the same number of rows, got {counts}")
    if next(iter(counts.values())) < 2:
        raise TrainerError(f"{path}: needs at least 2 rows")
    return rows, labels


def _read_npz(path: Path, inputs: Mapping[str, TensorSpec], labelled: bool) -> tuple[Rows, np.ndarray | None]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise TrainerError(f"{path}: not a readable NPZ file ({exc})") from None
    if len(inputs) == 1 and "x" in arrays and next(iter(inputs)) not in arrays:
        arrays[next(iter(inputs))] = arrays.pop("x")
    missing = [name for name in inputs if name not in arrays]
    if missing:
        raise TrainerError(
            f"{path}: no array for input {missing[0]!r} (the file has {sorted(arrays)}; "
            f"the model's inputs are {sorted(inputs)})"
        )
    labels = None
    if labelled:
        key = next((k for k in LABEL_KEYS if k in arrays), None)
        if key is None:
            raise TrainerError(f"{path}: labelled data needs an array 'y' (or 'label') next to the inputs")
        labels = arrays[key]
    return {name: arrays[name] for name in inputs}, labels


def _read_csv(path: Path, name: str, labelled: bool) -> tuple[Rows, np.ndarray | None]:
    if labelled:
        x, y = read_table(path)
        return {name: x}, y
    try:
        values = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2, dtype=np.float64)
    except (OSError, ValueError) as exc:
        raise TrainerError(f"{path}: cannot read CSV: a header row, then numbers only ({exc})") from None
    return {name: values}, None


def _check(path: Path, name: str, value: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """Cast to the input's dtype, reshaping flat CSV rows; refuse a shape or value the input cannot take."""
    value = np.asarray(value)
    if value.dtype.kind not in "biuf":
        raise TrainerError(f"{path}: input {name!r} must be numeric, got {value.dtype}")
    row_shape = spec.shape[1:]
    if value.ndim == 2 and None not in row_shape and len(row_shape) != 1 and value.shape[1] == np.prod(row_shape):
        value = value.reshape((len(value), *row_shape))
    fits = value.ndim == len(spec.shape) and all(
        d is None or d == v for d, v in zip(row_shape, value.shape[1:], strict=True)
    )
    if not fits:
        raise TrainerError(
            f"{path}: input {name!r} expects rows of shape {list(row_shape)} (None = any), got {list(value.shape[1:])}"
        )
    if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
        raise TrainerError(f"{path}: input {name!r} contains NaN or infinite values")
    if np.dtype(spec.dtype).kind in "iub" and value.dtype.kind == "f" and not np.all(np.mod(value, 1) == 0):
        raise TrainerError(f"{path}: input {name!r} is {spec.dtype} (e.g. token ids) but holds fractional values")
    return value.astype(spec.dtype)


def split_rows(rows: Rows, held_out_fraction: float, seed: int) -> tuple[Rows, Rows]:
    """(calibration rows, held-out rows): a seeded shuffle, at least one row on each side."""
    count = len(next(iter(rows.values())))
    order = np.random.default_rng(seed).permutation(count)
    held = min(max(1, round(count * held_out_fraction)), count - 1)
    return ({k: v[order[held:]] for k, v in rows.items()}, {k: v[order[:held]] for k, v in rows.items()})


def take(rows: Rows, count: int) -> Rows:
    """The first `count` rows of every input."""
    return {name: value[:count] for name, value in rows.items()}
