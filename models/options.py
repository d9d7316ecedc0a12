"""TrainOptions: every knob of one training run, filled by the CLI and read by recipes and the pipeline."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

VARIANTS = ("float32", "float16", "dynamic", "int8")
STRATEGIES = ("default", "mirrored", "multiworker")
OPTIMIZERS = ("adam", "sgd")


@dataclass(frozen=True)
class RecipeDefaults:
    """Hyper-parameters a recipe uses when the user gives none."""

    epochs: int
    batch_size: int
    learning_rate: float


@dataclass(frozen=True)
class TrainOptions:
    """One training run. None for epochs/batch_size/learning_rate means "the recipe's default"."""

    recipe: str
    repository: Path
    model_name: str | None = None
    version: int | None = None
    epochs: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    optimizer: str = "adam"
    validation_split: float = 0.15
    seed: int = 0
    data: Path | None = None
    strategy: str = "default"
    quiet: bool = False
    l1: float = 0.0
    l2: float = 0.0
    dropout: float | None = None
    early_stopping_patience: int = 0
    monitor: str = "val_loss"
    checkpoint_dir: Path | None = None
    prune: float = 0.0
    prune_epochs: int = 3
    max_accuracy_drop: float = 1.0
    variants: tuple[str, ...] = VARIANTS
    base_model: Path | None = None
    fine_tune_layers: int = 2
    fine_tune_learning_rate: float = 1e-5
    fine_tune_epochs: int | None = None
    task: str = "classification"
    label_column: str | None = None
    rnn: str = "lstm"
    stale_tmp_after_s: float = 600.0  # models.stale.DEFAULT_STALE_AFTER_S

    @property
    def name(self) -> str:
        """The published model name (defaults to the recipe name)."""
        return self.model_name or self.recipe

    def resolved(self, defaults: RecipeDefaults) -> TrainOptions:
        """Return a copy with the recipe's defaults filled in where the user gave nothing."""
        return replace(
            self,
            epochs=self.epochs if self.epochs is not None else defaults.epochs,
            batch_size=self.batch_size if self.batch_size is not None else defaults.batch_size,
            learning_rate=self.learning_rate if self.learning_rate is not None else defaults.learning_rate,
        )

    def hyperparameters(self) -> dict:
        """The hyper-parameters recorded in the model card."""
        params = {
            "epochs": self.epochs, "batch_size": self.batch_size, "learning_rate": self.learning_rate,
            "optimizer": self.optimizer, "validation_split": self.validation_split, "l1": self.l1, "l2": self.l2,
            "dropout": self.dropout, "early_stopping_patience": self.early_stopping_patience,
            "monitor": self.monitor, "prune_sparsity": self.prune, "strategy": self.strategy,
        }
        if self.prune:
            params["prune_epochs"] = self.prune_epochs
        return params
