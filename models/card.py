"""The trainer's model card: assembled from a training run and built, validated and written via `contract.card`."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from contract.card import new_card
from contract.card import write_card as write_valid_card
from models.evaluate import LATENCY_METHOD

if TYPE_CHECKING:
    from models.artifacts import VersionContext


def _frameworks() -> dict[str, str]:
    import keras
    import tensorflow as tf

    return {"tensorflow": tf.__version__, "keras": keras.__version__}


def build_card(ctx: VersionContext, *, signature: dict, variants: dict, samples: tuple[dict, dict]) -> dict:
    """Assemble the card from the run's context, the exported signature, measured variants and samples."""
    opts, data, trained = ctx.opts, ctx.data, ctx.trained
    gate_key = "max_mse_increase_percent" if data.task == "regression" else "max_accuracy_drop_points"
    optional = {
        "num_classes": data.num_classes,
        "training": {"epochs_run": trained.info["epochs_run"]} if "epochs_run" in trained.info else None,
        "phases": trained.phases or None,
        "pruning": trained.info.get("pruning"),
        "notes": trained.notes or None,
    }
    return new_card(
        opts.name,
        ctx.version,
        task=data.task,
        signature=signature,
        variants=variants,
        samples=samples,
        recipe=opts.recipe,
        created_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        hyperparameters=opts.hyperparameters() | trained.info.get("hyperparameters", {}),
        seed=opts.seed,
        data=data.card_info(),
        quality_gate={gate_key: opts.max_accuracy_drop},
        latency_method=LATENCY_METHOD,
        frameworks=_frameworks(),
        **{key: value for key, value in optional.items() if value is not None},
    )


def write_card(folder: Path, card: dict) -> Path:
    """Validate the card against the contract and write it into folder (fsynced; the last file before the
    atomic rename). Raises contract.card.CardError, and nothing is published, if the card is invalid."""
    return write_valid_card(folder, card)


def read_card(path: Path) -> dict:
    """Read a model_card.json as the JSON object it is."""
    return json.loads(Path(path).read_text())
