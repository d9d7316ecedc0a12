"""Fill one version folder from a model the trainer did not make: SavedModel, gated TFLite variants, card.

The trainer's own pieces do the work: `quantize.convert`, `evaluate.LiteRTModel` and its latency
and size measures, `scoring` for the labelled gate, and `contract.card` for the card.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from contract.card import new_card, variant_entry, write_card
from contract.layout import variant_path
from models.agreement import AgreementGate, agreement
from models.artifacts import _first_line
from models.errors import TrainerError
from models.evaluate import (
    EVAL_CHUNK_ROWS,
    LATENCY_METHOD,
    LiteRTModel,
    file_sizes,
    gzip_size_bytes,
    latency_ms,
    litert_latency_ms,
    savedmodel_files,
)
from models.export import SIGNATURE
from models.quantize import INTERFACES, convert
from models.report import Reporter
from models.rows import Rows, take
from models.scoring import gate, metric_name, score
from models.sources import SourceModel

SAMPLE_ROWS = 4
Predict = Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]


@dataclass
class PublishPlan:
    """Everything checked before writing: the source, the rows, how variants are gated."""

    name: str
    version: int
    source: SourceModel
    variants: tuple[str, ...]
    calibration: Rows | None  # int8 calibration rows; None = no int8
    gate_rows: Rows  # rows every variant is compared on
    gate_rows_origin: str
    agreement_gate: AgreementGate
    task: str | None = None  # classification | binary | regression | None (unknown outputs)
    labels: np.ndarray | None = None  # with labels, the gate is the trainer's metric drop
    max_accuracy_drop: float = 1.0
    data: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    reporter: Reporter = field(default_factory=Reporter)


def write_version(folder: Path, plan: PublishPlan) -> dict:
    """Export, convert, measure and gate every variant into folder; write the card last. Returns the card.

    Raises TrainerError when the converter takes none of the variants (naming its first complaint),
    RuntimeError if the exported SavedModel disagrees with the source (a bug).
    """
    plan.reporter.progress(f"exporting SavedModel ({plan.source.kind}, signature {plan.source.signature})")
    plan.source.export(folder)
    predict = _savedmodel_predictor(folder)
    samples = take(plan.gate_rows, SAMPLE_ROWS)
    sample_outputs = predict(samples)
    _check_export(plan.source.predict(samples), sample_outputs)
    reference = _chunked(predict, plan.gate_rows)
    variants = {"savedmodel": _savedmodel_entry(folder, plan, predict, reference)}
    for name in plan.variants:
        plan.reporter.progress(f"converting TFLite variant {name}")
        variants[name] = _tflite_entry(folder, name, plan, reference, variants["savedmodel"])
    failures = [
        v["refused_reason"]
        for n, v in variants.items()
        if n != "savedmodel" and "size_bytes" not in v and v.get("refused_reason", "").startswith("conversion failed")
    ]
    if plan.variants and len(failures) == len(plan.variants):
        raise TrainerError(f"the TFLite converter cannot take this model: {failures[0]}")
    card = _card(plan, variants, (samples, sample_outputs))
    write_card(folder, card)
    return card


def _savedmodel_predictor(folder: Path) -> Predict:
    import tensorflow as tf

    function = tf.saved_model.load(str(folder)).signatures[SIGNATURE]
    dtypes = {name: spec.dtype for name, spec in function.structured_input_signature[1].items()}

    def predict(feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        result = function(**{name: tf.constant(feed[name], dtype=dtype) for name, dtype in dtypes.items()})
        return {name: value.numpy() for name, value in result.items()}

    return predict


def _check_export(expected: Mapping[str, np.ndarray], served: Mapping[str, np.ndarray]) -> None:
    if set(expected) != set(served):
        raise RuntimeError(f"exported outputs {sorted(served)} differ from the source's {sorted(expected)}")
    for name, value in expected.items():
        if not np.allclose(served[name], value, rtol=1e-5, atol=1e-5):
            raise RuntimeError(f"exported SavedModel output {name!r} differs from the source model's")


def _chunked(predict: Predict, rows: Rows) -> dict[str, np.ndarray]:
    count = len(next(iter(rows.values())))
    parts = [
        predict(take({k: v[i:] for k, v in rows.items()}, EVAL_CHUNK_ROWS)) for i in range(0, count, EVAL_CHUNK_ROWS)
    ]
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


def _labelled_metric(plan: PublishPlan, outputs: Mapping[str, np.ndarray]) -> dict:
    if plan.labels is None:
        return {}
    return {metric_name(plan.task): score(plan.task, next(iter(outputs.values())), plan.labels)}


def _savedmodel_entry(folder: Path, plan: PublishPlan, predict: Predict, reference: dict) -> dict:
    one_row = take(plan.gate_rows, 1)
    size, gzipped = file_sizes(savedmodel_files(folder))
    latency = round(latency_ms(lambda: predict(one_row)), 4)
    return variant_entry(
        "savedmodel",
        published=True,
        **_labelled_metric(plan, reference),
        size_bytes=size,
        gzip_size_bytes=gzipped,
        latency_ms_batch1=latency,
    )


def _tflite_entry(folder: Path, name: str, plan: PublishPlan, reference: dict, savedmodel: dict) -> dict:
    """Convert, measure and gate one variant; write its file only if it passes."""
    entry = variant_entry(name, published=False, interface=INTERFACES[name])
    if name == "int8" and plan.calibration is None:
        entry["refused_reason"] = (
            "not produced: full-integer int8 needs representative rows "
            "(--calibration-data); it is never calibrated on random data"
        )
        return entry
    try:
        with native_stderr_silenced():  # the converter's MLIR dump; its exception carries the message
            model_bytes = convert(folder, name, None, plan.calibration)
        runtime = LiteRTModel(model_bytes)
    except Exception as exc:  # the converter raises many types; its message names the op
        entry["refused_reason"] = f"conversion failed: {_first_line(exc)}"
        return entry
    outputs = _chunked(runtime.predict, plan.gate_rows)
    figures = agreement(reference, outputs)
    entry.update(_labelled_metric(plan, outputs), agreement=figures, io=runtime.io_details())
    if any(d["dtype"] == "int8" for side in entry["io"].values() for d in side.values()):
        entry["interface"] = "int8"
    entry.update(
        size_bytes=len(model_bytes),
        gzip_size_bytes=gzip_size_bytes(model_bytes),
        latency_ms_batch1=round(litert_latency_ms(runtime, take(plan.gate_rows, 1)), 4),
    )
    if plan.labels is not None:
        key = metric_name(plan.task)
        reason = gate(plan.task, savedmodel[key], entry[key], plan.max_accuracy_drop)
    else:
        reason = plan.agreement_gate.refusal(figures)
    if reason:
        entry["refused_reason"] = reason
        return entry
    path = variant_path(folder, name)
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(model_bytes)
    entry["published"] = True
    return entry


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Send file descriptor 2 (where C++ code writes) to /dev/null for the block; Python's stderr is kept.

    NOTE: process-wide while it lasts; publish runs one conversion at a time.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _gate_section(plan: PublishPlan) -> tuple[str, dict]:
    if plan.labels is not None:
        key = "max_mse_increase_percent" if plan.task == "regression" else "max_accuracy_drop_points"
        return f"labels: {metric_name(plan.task)} on the eval data vs the SavedModel", {key: plan.max_accuracy_drop}
    kind = "top-1 agreement" if plan.agreement_gate.classify else "max and mean absolute error"
    return f"agreement with the source model ({kind}) on {plan.gate_rows_origin}", plan.agreement_gate.card()


def _card(plan: PublishPlan, variants: dict, samples: tuple[Rows, dict]) -> dict:
    import keras
    import tensorflow as tf

    method, thresholds = _gate_section(plan)
    source = plan.source
    signature = {
        "name": SIGNATURE,
        "inputs": {k: s.card() for k, s in source.inputs.items()},
        "outputs": {k: s.card() for k, s in source.outputs.items()},
    }
    card = new_card(
        plan.name,
        plan.version,
        task=plan.task or "regression",
        signature=signature,
        variants=variants,
        samples=samples,
        created_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        source=source.provenance(),
        data=plan.data,
        quality_gate=thresholds,
        quality_gate_method=method,
        latency_method=LATENCY_METHOD,
        frameworks={"tensorflow": tf.__version__, "keras": keras.__version__},
    )
    if plan.task is None:
        del card["task"]  # outputs of unknown meaning: the server's guard compares values only
    if plan.notes:
        card["notes"] = list(plan.notes)
    return card
