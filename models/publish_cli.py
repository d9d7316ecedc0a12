"""Command line of `python -m models publish SOURCE --repository DIR --model-name NAME [options]`."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from models.errors import TrainerError
from models.options import VARIANTS
from models.stale import DEFAULT_STALE_AFTER_S

DESCRIPTION = """Publish a model you trained elsewhere (a .keras file, or a SavedModel folder) into a Batchwise
model repository as <repository>/<model-name>/<version>/: the SavedModel (signature serving_default),
the TFLite variants that pass the quality gate, and model_card.json."""

EPILOG = """data files:
  .npz  arrays keyed by input name (a single-input model may use `x`); eval data adds labels `y`
  .csv  a single-input model: a header row, one row per line; eval data has a `label` column (else the last)

quality gate:
  with --eval-data and --task: accuracy (or MSE) of each variant vs the SavedModel, --max-accuracy-drop
  without labels: agreement with the source model on held-out calibration rows (20%): top-1 agreement
  for --task classification, else max and mean absolute error over all outputs.
int8 (full-integer) needs --calibration-data; it is never calibrated on random data.
Exit status: 0 published, 2 bad input (one `error: ...` line, nothing written)."""


def add_publish_parser(commands) -> None:
    """Add the `publish` sub-command to the trainer's sub-parsers."""
    parser = commands.add_parser(
        "publish",
        help="publish your own .keras file or SavedModel",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    where = parser.add_argument_group("model and repository")
    where.add_argument("source", type=Path, help="a .keras file or a SavedModel folder")
    where.add_argument("--repository", type=Path, required=True, help="model repository root folder")
    where.add_argument("--model-name", required=True, help="published model name")
    where.add_argument("--version", type=int, help="version to publish (default: next free integer)")
    where.add_argument("--signature", help="SavedModel signature to publish (default serving_default)")
    _add_gate_options(parser.add_argument_group("data and quality gate"))
    parser.add_argument(
        "--stale-tmp-after-s",
        type=float,
        default=DEFAULT_STALE_AFTER_S,
        help="reclaim .tmp-* folders of killed runs older than this (default %(default)s)",
    )
    parser.add_argument("--quiet", action="store_true", help="only the summary")


def _add_gate_options(data) -> None:
    data.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help=f"comma-separated TFLite variants, or `none` (default {','.join(VARIANTS)})",
    )
    data.add_argument("--calibration-data", type=Path, help="representative input rows (.npz or .csv)")
    data.add_argument("--eval-data", type=Path, help="labelled rows (.npz with `y`, or .csv with `label`)")
    data.add_argument(
        "--task",
        choices=("classification", "regression"),
        help="what the outputs mean (needed with --eval-data; classification gates on top-1)",
    )
    data.add_argument(
        "--max-accuracy-drop",
        type=float,
        default=1.0,
        help="with labels: max accuracy drop in points (regression: MSE increase in %%) (default 1)",
    )
    data.add_argument(
        "--min-top1-agreement",
        type=float,
        default=0.97,
        help="without labels, classification: min top-1 agreement with the source (default 0.97)",
    )
    data.add_argument(
        "--max-abs-error",
        type=float,
        default=0.1,
        help="without labels: max absolute error vs the source over all outputs (default 0.1)",
    )
    data.add_argument(
        "--max-mean-abs-error",
        type=float,
        default=0.02,
        help="without labels: max mean absolute error vs the source (default 0.02)",
    )
    data.add_argument("--seed", type=int, default=0, help="seed for the calibration/held-out split")


def publish_options(args: argparse.Namespace):
    """PublishOptions from parsed arguments; raises TrainerError for an unknown variant name."""
    from models.publish import PublishOptions

    variants = tuple(v.strip() for v in args.variants.split(",") if v.strip() not in {"", "none"})
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        raise TrainerError(f"unknown TFLite variant(s) {', '.join(unknown)} (choose from {', '.join(VARIANTS)})")
    fields = {key: value for key, value in vars(args).items() if key not in {"command", "variants"}}
    return PublishOptions(**fields, variants=variants)


def run_publish(args: argparse.Namespace):
    """Run a parsed `publish` command; return the PublishResult. Raises TrainerError."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ chatter out of the output
    from models.publish import run
    from models.report import Reporter

    return run(publish_options(args), Reporter(quiet=args.quiet))
