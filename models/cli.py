"""Command line: `python -m models train <recipe> ...` and `python -m models publish SOURCE ...`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from models.errors import TrainerError
from models.options import OPTIMIZERS, STRATEGIES, VARIANTS, TrainOptions
from models.publish_cli import add_publish_parser, run_publish
from models.recipes import RECIPES
from models.stale import DEFAULT_STALE_AFTER_S

DESCRIPTION = """Train a tf.keras recipe and publish it atomically into a Batchwise model repository as
<repository>/<model-name>/<version>/ with a SavedModel (signature serving_default), TFLite variants
(float32, float16, dynamic-range int8, full-integer int8) that pass the quality gate, and model_card.json."""

PUBLISH_NOTE = """

`publish` does the same for a model trained elsewhere (a .keras file or a SavedModel folder):
python -m models publish SOURCE --repository DIR --model-name NAME (see docs/own-model.md)."""

DATA_HELP = """--data formats: .csv with a header row (label column `label`, or --label-column, or the last one),
or .npz with arrays `x` and `y`. Exit status: 0 published (or non-chief worker done), 2 bad input."""


def recipes_help() -> str:
    """`recipes:` and one line per registered recipe (name and summary), in registry order."""
    width = max(len(name) for name in RECIPES)
    return "recipes:\n" + "\n".join(f"  {name:<{width}}  {recipe.summary}" for name, recipe in RECIPES.items())


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    run = parser.add_argument_group("model and repository")
    run.add_argument("recipe", help=" | ".join(RECIPES))
    run.add_argument("--repository", type=Path, required=True, help="model repository root folder")
    run.add_argument("--model-name", help="published model name (default: the recipe name)")
    run.add_argument("--version", type=int, help="version to publish (default: next free integer)")
    fit = parser.add_argument_group("training")
    fit.add_argument("--epochs", type=int, help="training epochs (default: per recipe)")
    fit.add_argument("--batch-size", type=int, help="global batch size (default: per recipe)")
    fit.add_argument("--learning-rate", type=float, help="learning rate (default: per recipe)")
    fit.add_argument("--optimizer", choices=OPTIMIZERS, default="adam", help="adam, or sgd with momentum 0.9")
    fit.add_argument("--validation-split", type=float, default=0.15,
                     help="fraction of the training rows held out for validation (default 0.15); "
                          "a further 20%% test split is never seen during training")
    fit.add_argument("--seed", type=int, default=0, help="seed for splits, initialisation and shuffling")
    fit.add_argument("--data", type=Path, help="your own data file (.csv or .npz) instead of the recipe's")
    fit.add_argument("--label-column", help="CSV label column (default: `label`, else the last column)")
    fit.add_argument("--strategy", choices=STRATEGIES, default="default",
                     help="mirrored: MirroredStrategy over the visible devices; multiworker: "
                          "MultiWorkerMirroredStrategy configured by TF_CONFIG (only the chief publishes)")
    fit.add_argument("--quiet", action="store_true", help="no per-epoch progress; only the summary")
    fit.add_argument("--stale-tmp-after-s", type=float, default=DEFAULT_STALE_AFTER_S,
                     help="reclaim .tmp-* folders of killed runs older than this (default %(default)s)")


def _add_feature_options(parser: argparse.ArgumentParser) -> None:
    reg = parser.add_argument_group("regularization and callbacks")
    reg.add_argument("--l1", type=float, default=0.0, help="L1 kernel_regularizer factor (default 0: off)")
    reg.add_argument("--l2", type=float, default=0.0, help="L2 kernel_regularizer factor (default 0: off)")
    reg.add_argument("--dropout", type=float, help="dropout rate (default: per recipe; digits 0.3, others 0)")
    reg.add_argument("--early-stopping-patience", type=int, default=0,
                     help="EarlyStopping patience in epochs, restoring the best weights (default 0: off)")
    reg.add_argument("--monitor", default="val_loss", help="quantity for EarlyStopping and ModelCheckpoint")
    reg.add_argument("--checkpoint-dir", type=Path,
                     help="ModelCheckpoint (save_best_only) to DIR/<name>-<phase>-best.keras")
    opt = parser.add_argument_group("pruning, quantization and quality gate")
    opt.add_argument("--prune", type=float, default=0.0, metavar="SPARSITY",
                     help="magnitude-prune Dense/Conv kernels to this sparsity (e.g. 0.8) in an extra "
                          "fine-tuning phase with a polynomial schedule (default 0: off)")
    opt.add_argument("--prune-epochs", type=int, default=3, help="epochs of the pruning phase (default 3)")
    opt.add_argument("--variants", default=",".join(VARIANTS),
                     help=f"comma-separated TFLite variants to build, or `none` (default {','.join(VARIANTS)})")
    opt.add_argument("--max-accuracy-drop", type=float, default=1.0,
                     help="refuse a TFLite variant whose test accuracy is more than this many points below "
                          "the SavedModel's (regression: MSE more than this many percent above) (default 1.0)")
    rec = parser.add_argument_group("recipe-specific")
    rec.add_argument("--base-model", type=Path, help="transfer: a .keras base model (default: train a digits "
                     "CNN on classes 0-4 first)")
    rec.add_argument("--fine-tune-layers", type=int, default=2,
                     help="transfer: unfreeze this many of the base's last layers with weights (default 2)")
    rec.add_argument("--fine-tune-learning-rate", type=float, default=1e-5,
                     help="transfer: Adam learning rate for fine-tuning (default 1e-5)")
    rec.add_argument("--fine-tune-epochs", type=int, help="transfer: fine-tuning epochs (default: twice --epochs)")
    rec.add_argument("--task", choices=("classification", "regression"), default="classification",
                     help="tabular: crossentropy over class ids, or mean squared error")
    rec.add_argument("--rnn", choices=("lstm", "gru"), default="lstm", help="sequence: the second recurrent layer")


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser for the whole CLI."""
    parser = argparse.ArgumentParser(prog="python -m models", description=DESCRIPTION + PUBLISH_NOTE,
                                     epilog=f"{recipes_help()}\n\nEvery option: python -m models train --help",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="{train,publish}")
    train = commands.add_parser("train", help="train a recipe and publish a version", description=DESCRIPTION,
                                epilog=f"{recipes_help()}\n\n{DATA_HELP}",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_run_options(train)
    _add_feature_options(train)
    add_publish_parser(commands)
    return parser


def options_from(args: argparse.Namespace) -> TrainOptions:
    """TrainOptions from parsed arguments; raises TrainerError for an unknown variant name."""
    variants = tuple(v.strip() for v in args.variants.split(",") if v.strip() not in {"", "none"})
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        raise TrainerError(f"unknown TFLite variant(s) {', '.join(unknown)} (choose from {', '.join(VARIANTS)})")
    fields = {key: value for key, value in vars(args).items() if key not in {"command", "variants"}}
    return TrainOptions(**fields, variants=variants)


def _run(args: argparse.Namespace):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ chatter out of the output
    from models.pipeline import run
    from models.report import Reporter

    return run(options_from(args), Reporter(quiet=args.quiet))


def train(argv: list[str]):
    """Run the arguments of `train` in-process; return the pipeline's RunResult. Raises TrainerError."""
    return _run(build_parser().parse_args(["train", *argv]))


def main(argv: list[str] | None = None) -> int:
    """Parse argv, run the command, print one `error: ...` line on bad input. Returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        run_publish(args) if args.command == "publish" else _run(args)
    except TrainerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
