"""The model card (model_card.json, schema_version 1): what the server and people learn about a version."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from models.evaluate import LATENCY_METHOD

if TYPE_CHECKING:
    from models.artifacts import VersionContext

SCHEMA_VERSION = 1


def _lists(arrays: dict[str, np.ndarray]) -> dict[str, list]:
    return {name: np.asarray(value).tolist() for name, value in arrays.items()}


def _frameworks() -> dict[str, str]:
    import keras
    import tensorflow as tf

    return {"tensorflow": tf.__version__, "keras": keras.__version__}


def build_card(ctx: VersionContext, *, signature: dict, variants: dict, samples: tuple[dict, dict]) -> dict:
    """Assemble the card from the run's context, the exported signature, measured variants and samples."""
    opts, data, trained = ctx.opts, ctx.data, ctx.trained
    gate_key = "max_mse_increase_percent" if data.task == "regression" else "max_accuracy_drop_points"
    card = {
        "schema_version": SCHEMA_VERSION,
        "name": opts.name,
        "version": ctx.version,
        "recipe": opts.recipe,
        "task": data.task,
        "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "hyperparameters": opts.hyperparameters() | trained.info.get("hyperparameters", {}),
        "seed": opts.seed,
        "data": data.card_info(),
        "signature": signature,
        "variants": variants,
        "quality_gate": {gate_key: opts.max_accuracy_drop},
        "latency_method": LATENCY_METHOD,
        "frameworks": _frameworks(),
        "samples": {"inputs": _lists(samples[0]), "outputs": _lists(samples[1])},
    }
    if data.num_classes is not None:
        card["num_classes"] = data.num_classes
    if "epochs_run" in trained.info:
        card["training"] = {"epochs_run": trained.info["epochs_run"]}
    if trained.phases:
        card["phases"] = trained.phases
    if "pruning" in trained.info:
        card["pruning"] = trained.info["pruning"]
    if trained.notes:
        card["notes"] = trained.notes
    return card


def write_card(path: Path, card: dict) -> None:
    """Write the card as indented JSON and fsync it (it is the last file before the atomic rename)."""
    with path.open("w") as handle:
        json.dump(card, handle, indent=2)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())


def read_card(path: Path) -> dict:
    """Read a model_card.json."""
    return json.loads(Path(path).read_text())
