"""What a recipe is: how it loads its data, builds its model and (optionally) trains it its own way."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from models.data import Dataset
from models.options import RecipeDefaults, TrainOptions


@dataclass
class TrainedModel:
    """A fitted keras model plus what the run learned about itself (phase metrics, notes)."""

    model: Any  # keras.Model; typed loosely so this module does not import TensorFlow
    phases: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    info: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Recipe:
    """A named model recipe.

    load_data(opts) -> Dataset must not import TensorFlow (bad input fails fast).
    build(data, opts) -> keras.Model (uncompiled), called inside the strategy's scope.
    train, when set, replaces the standard compile+fit: train(data, opts, strategy, reporter) -> TrainedModel.
    """

    name: str
    summary: str
    defaults: RecipeDefaults
    load_data: Callable[[TrainOptions], Dataset]
    build: Callable[[Dataset, TrainOptions], Any]
    train: Callable[..., TrainedModel] | None = None
