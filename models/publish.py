"""`publish`: bring your own model. Check a .keras file or SavedModel and its data, then publish a version.

Every user error (missing file, bad signature, rows that do not fit an input, taken version, ...)
raises TrainerError before anything is written; a failure while writing leaves no trace.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from models.agreement import AgreementGate
from models.data import class_labels
from models.errors import TrainerError
from models.export import choose_version, validate_model_name
from models.options import VARIANTS
from models.report import Reporter, summary_table
from models.rows import load_rows, split_rows, take
from models.stale import DEFAULT_STALE_AFTER_S, reclaim_stale_tmp

HELD_OUT_FRACTION = 0.2
MAX_CALIBRATION_ROWS = 200  # as the trainer (quantize.REPRESENTATIVE_ROWS); more rows cost conversion time
SYNTHETIC_ROWS = 16


@dataclass(frozen=True)
class PublishOptions:
    """One `publish` run, as the CLI fills it."""

    source: Path
    repository: Path
    model_name: str
    version: int | None = None
    signature: str | None = None
    variants: tuple[str, ...] = VARIANTS
    calibration_data: Path | None = None
    eval_data: Path | None = None
    task: str | None = None
    max_accuracy_drop: float = 1.0
    min_top1_agreement: float = 0.97
    max_abs_error: float = 0.1
    max_mean_abs_error: float = 0.02
    seed: int = 0
    stale_tmp_after_s: float = DEFAULT_STALE_AFTER_S
    quiet: bool = False


@dataclass
class PublishResult:
    """The card and the published version folder."""

    card: dict
    path: Path


def run(opts: PublishOptions, reporter: Reporter) -> PublishResult:
    """Check everything, publish `<repository>/<model-name>/<version>/` atomically, print the summary."""
    _check_options(opts)
    validate_model_name(opts.model_name)
    for line in reclaim_stale_tmp(opts.repository, opts.stale_tmp_after_s):
        reporter.progress(line)
    version = choose_version(opts.repository, opts.model_name, opts.version)
    from models.sources import load_source  # the slow TensorFlow import happens here

    source = load_source(opts.source, opts.signature)
    plan = _plan(opts, source, version, reporter)
    from models.export import publish
    from models.own_model import write_version

    path, card = publish(opts.repository, opts.model_name, version, lambda folder: write_version(folder, plan))
    reporter.result(summary_table(card))
    reporter.result(f"published {path}")
    return PublishResult(card, path)


def _check_options(opts: PublishOptions) -> None:
    if opts.eval_data is not None and opts.task is None:
        raise TrainerError("--eval-data needs --task classification|regression (what the labels mean)")
    if opts.max_accuracy_drop < 0 or opts.max_abs_error < 0 or opts.max_mean_abs_error < 0:
        raise TrainerError("--max-accuracy-drop, --max-abs-error and --max-mean-abs-error must not be negative")
    if not 0.0 <= opts.min_top1_agreement <= 1.0:
        raise TrainerError(f"--min-top1-agreement must be in [0, 1], got {opts.min_top1_agreement}")
    if opts.stale_tmp_after_s < 0:
        raise TrainerError("--stale-tmp-after-s must not be negative")


def _plan(opts: PublishOptions, source, version: int, reporter: Reporter):
    from models.own_model import PublishPlan

    data, notes = {}, []
    calibration = held_out = None
    if opts.calibration_data is not None:
        rows, _ = load_rows(opts.calibration_data, source.inputs, labelled=False)
        calibration, held_out = split_rows(rows, HELD_OUT_FRACTION, opts.seed)
        calibration = take(calibration, MAX_CALIBRATION_ROWS)
        data["calibration"] = {
            "path": str(opts.calibration_data),
            "rows": len(next(iter(rows.values()))),
            "held_out_rows": len(next(iter(held_out.values()))),
            "calibrated_on_rows": len(next(iter(calibration.values()))),
        }
    elif "int8" in opts.variants:
        notes.append("int8 not produced: no --calibration-data (full-integer int8 needs representative rows)")
    task, labels, gate_rows, origin = _gate_rows(opts, source, held_out, data)
    if origin == "synthetic rows":
        notes.append(
            f"no --calibration-data or --eval-data: variants were compared with the source model on "
            f"{SYNTHETIC_ROWS} synthetic rows (normal floats, zero ids), a weak check"
        )
    classify = task in ("classification", "binary")
    agreement_gate = AgreementGate(classify, opts.min_top1_agreement, opts.max_abs_error, opts.max_mean_abs_error)
    return PublishPlan(
        name=opts.model_name,
        version=version,
        source=source,
        variants=opts.variants,
        calibration=calibration,
        gate_rows=gate_rows,
        gate_rows_origin=origin,
        agreement_gate=agreement_gate,
        task=task,
        labels=labels,
        max_accuracy_drop=opts.max_accuracy_drop,
        data=data,
        notes=notes,
        reporter=reporter,
    )


def _gate_rows(opts: PublishOptions, source, held_out, data: dict):
    """(task, labels, rows to gate on, where they came from)."""
    import numpy as np

    task = opts.task
    if opts.eval_data is not None:
        rows, labels = load_rows(opts.eval_data, source.inputs, labelled=True)
        task, labels = _labels(opts, source, labels)
        data["eval"] = {"path": str(opts.eval_data), "rows": len(labels)}
        return task, labels, rows, "the labelled eval data"
    if task == "classification" and _single_score(source):
        task = "binary"
    if held_out is not None:
        return task, None, held_out, "held-out calibration rows"
    rng = np.random.default_rng(opts.seed)
    rows = {
        name: (
            rng.standard_normal((SYNTHETIC_ROWS, *[d or 1 for d in spec.shape[1:]]))
            if np.dtype(spec.dtype).kind == "f"
            else np.zeros((SYNTHETIC_ROWS, *[d or 1 for d in spec.shape[1:]]))
        ).astype(spec.dtype)
        for name, spec in source.inputs.items()
    }
    return task, None, rows, "synthetic rows"


def _labels(opts: PublishOptions, source, labels):
    import numpy as np

    if len(source.outputs) != 1:
        raise TrainerError(
            f"--eval-data scores one output, but the model has outputs {sorted(source.outputs)}; "
            "publish without --eval-data to gate on agreement with the source model"
        )
    where = str(opts.eval_data)
    if opts.task == "regression":
        return "regression", np.asarray(labels, dtype=np.float64).reshape(-1)
    if _single_score(source):
        return "binary", class_labels(labels, 2, where)
    classes = source.outputs[next(iter(source.outputs))].shape[-1]
    return "classification", class_labels(labels, classes, where)


def _single_score(source) -> bool:
    spec = next(iter(source.outputs.values()))
    return len(source.outputs) == 1 and len(spec.shape) == 2 and spec.shape[-1] == 1
