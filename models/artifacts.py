"""Fill one version folder: SavedModel, TFLite variants that pass the quality gate, and the model card."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contract.card import variant_entry
from contract.layout import variant_path
from models.card import build_card, write_card
from models.data import Dataset
from models.evaluate import (
    LiteRTModel,
    file_sizes,
    gzip_size_bytes,
    latency_ms,
    litert_latency_ms,
    predict_in_chunks,
    savedmodel_files,
    savedmodel_predictor,
)
from models.export import check_savedmodel, export_savedmodel
from models.options import TrainOptions
from models.quantize import INTERFACES, convert, representative_rows
from models.recipes.base import TrainedModel
from models.report import Reporter
from models.scoring import gate, metric_name, score

SAMPLE_ROWS = 4


@dataclass
class VersionContext:
    """Everything write_version needs besides the folder."""

    trained: TrainedModel
    data: Dataset
    opts: TrainOptions
    version: int
    reporter: Reporter


def write_version(folder: Path, ctx: VersionContext) -> dict:
    """Export, convert, evaluate and gate every variant into folder; write model_card.json last.

    Returns the card. Raises RuntimeError if the exported SavedModel disagrees with the in-process model.
    """
    data, model = ctx.data, ctx.trained.model
    samples = data.x_test[:SAMPLE_ROWS]
    ctx.reporter.progress(f"exporting SavedModel to {folder.name}/")
    export_savedmodel(model, folder, data.input_name, data.output_name, data.x_train.dtype.name)
    signature = check_savedmodel(folder, model, data.input_name, data.output_name, samples)
    predict = savedmodel_predictor(folder, data.input_name, data.output_name)
    reference = _savedmodel_variant(folder, data, predict)
    variants = {"savedmodel": reference}
    calibration = representative_rows(data.x_train, ctx.opts.seed)
    for name in ctx.opts.variants:
        ctx.reporter.progress(f"converting TFLite variant {name}")
        variants[name] = _tflite_variant(folder, name, data, calibration,
                                         gate_against=(reference, ctx.opts.max_accuracy_drop))
    sample_outputs = {data.output_name: predict(samples)}
    card = build_card(ctx, signature=signature, variants=variants,
                      samples=({data.input_name: samples}, sample_outputs))
    write_card(folder, card)
    return card


def _savedmodel_variant(folder: Path, data: Dataset, predict) -> dict:
    metric = score(data.task, predict_in_chunks(predict, data.x_test), data.y_test)
    one_row = data.x_test[:1]
    size, gzipped = file_sizes(savedmodel_files(folder))
    latency = round(latency_ms(lambda: predict(one_row)), 4)
    return variant_entry("savedmodel", published=True, **{metric_name(data.task): metric}, size_bytes=size,
                         gzip_size_bytes=gzipped, latency_ms_batch1=latency)


def _tflite_variant(folder: Path, name: str, data: Dataset, calibration: np.ndarray, *,
                    gate_against: tuple[dict, float]) -> dict:
    """Convert, measure and gate (against the reference variant, max drop) one variant; write it if it passes."""
    reference, max_drop = gate_against
    entry = variant_entry(name, published=False, interface=INTERFACES[name])
    try:
        model_bytes = convert(folder, name, data.input_name, calibration)
        runtime = LiteRTModel(model_bytes)
    except Exception as exc:  # the converter raises many types; the reason goes in the card
        entry["refused_reason"] = f"conversion failed: {_first_line(exc)}"
        return entry
    key = metric_name(data.task)
    outputs = predict_in_chunks(
        lambda x: runtime.predict({data.input_name: x})[data.output_name], data.x_test)
    entry[key] = score(data.task, outputs, data.y_test)
    entry["io"] = runtime.io_details()
    if any(d["dtype"] == "int8" for side in entry["io"].values() for d in side.values()):
        entry["interface"] = "int8"
    entry["size_bytes"] = len(model_bytes)
    entry["gzip_size_bytes"] = gzip_size_bytes(model_bytes)
    entry["latency_ms_batch1"] = round(litert_latency_ms(runtime, {data.input_name: data.x_test[:1]}), 4)
    reason = gate(data.task, reference[key], entry[key], max_drop)
    if reason:
        entry["refused_reason"] = reason
        return entry
    path = variant_path(folder, name)
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(model_bytes)
    entry["published"] = True
    return entry


def _first_line(exc: Exception) -> str:
    """The converter's first error message, without MLIR source locations, on one short line."""
    text = str(exc).strip()
    for line in text.splitlines():
        if "error:" in line:
            message = line.split("error:", 1)[1].strip()
            return re.sub(r"^loc\(.*?\)\)+:\s*", "", message)[:300]
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]
