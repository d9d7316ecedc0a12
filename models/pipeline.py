"""One training run end to end: data -> strategy -> train -> (prune) -> publish a version atomically."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from models.errors import TrainerError
from models.export import choose_version, validate_model_name
from models.options import TrainOptions
from models.recipes import get_recipe
from models.report import Reporter, summary_table
from models.stale import reclaim_stale_tmp


@dataclass
class RunResult:
    """What a run produced: the card and folder when this process published (else None), and the model."""

    card: dict | None
    path: Path | None
    model: object = None  # the trained keras.Model, detached from any distribution strategy


def run(opts: TrainOptions, reporter: Reporter) -> RunResult:
    """Train opts.recipe and publish `<repository>/<name>/<version>/` (only the chief of a cluster publishes).

    User errors (bad data, unknown recipe, taken version, ...) raise TrainerError before anything is
    written; failures while writing leave no trace in the repository.
    """
    recipe = get_recipe(opts.recipe)
    opts = opts.resolved(recipe.defaults)
    _check_options(opts)
    validate_model_name(opts.name)
    for line in reclaim_stale_tmp(opts.repository, opts.stale_tmp_after_s):
        reporter.progress(line)
    version = choose_version(opts.repository, opts.name, opts.version)
    data = recipe.load_data(opts)  # before TensorFlow: bad input fails fast and quietly

    from models import training  # the slow TensorFlow import happens here

    strategy = training.make_strategy(opts.strategy)  # first TF work, as MultiWorkerMirroredStrategy requires
    _seed(opts.seed)
    reporter.progress(f"recipe {recipe.name}: {recipe.summary}")
    reporter.progress(f"data: {data.source}; {len(data.x_train)} train, {len(data.x_val)} validation, "
                      f"{len(data.x_test)} test; strategy: {training.describe_strategy(strategy)}")
    if recipe.train is not None:
        trained = recipe.train(data, opts, strategy, reporter)
    else:
        trained = training.train_standard(recipe, data, opts, strategy, reporter)
    if opts.prune:
        from models.pruning import prune

        trained = prune(trained, data, opts, strategy, reporter)
    trained.model = training.detach(trained.model)
    training.report_metric(reporter, "trained model", data.task, training.evaluate(trained.model, data))
    if not training.is_chief(strategy):
        reporter.result("not the chief worker: nothing published (the chief publishes)")
        return RunResult(None, None, trained.model)
    return _publish(opts, version, trained, data, reporter)


def _publish(opts: TrainOptions, version: int, trained, data, reporter: Reporter) -> RunResult:
    from models.artifacts import VersionContext, write_version
    from models.export import publish

    ctx = VersionContext(trained=trained, data=data, opts=opts, version=version, reporter=reporter)
    path, card = publish(opts.repository, opts.name, version, lambda folder: write_version(folder, ctx))
    reporter.result(summary_table(card))
    reporter.result(f"published {path}")
    return RunResult(card, path, trained.model)


def _seed(seed: int) -> None:
    import keras

    keras.utils.set_random_seed(seed)


def _check_options(opts: TrainOptions) -> None:
    """Reject values argparse cannot (ranges, combinations) with one clear message."""
    if opts.epochs < 1 or opts.batch_size < 1:
        raise TrainerError("--epochs and --batch-size must be at least 1")
    if opts.learning_rate <= 0:
        raise TrainerError(f"--learning-rate must be positive, got {opts.learning_rate}")
    if not 0.0 <= opts.prune < 1.0:
        raise TrainerError(f"--prune must be a sparsity in [0, 1), got {opts.prune}")
    if opts.dropout is not None and not 0.0 <= opts.dropout < 1.0:
        raise TrainerError(f"--dropout must be in [0, 1), got {opts.dropout}")
    if opts.l1 < 0 or opts.l2 < 0 or opts.max_accuracy_drop < 0:
        raise TrainerError("--l1, --l2 and --max-accuracy-drop must not be negative")
    if opts.base_model is not None and opts.recipe != "transfer":
        raise TrainerError("--base-model only applies to the transfer recipe")
