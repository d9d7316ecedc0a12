"""The recipe registry: name -> Recipe. Importing it does not import TensorFlow."""

from __future__ import annotations

from models.errors import TrainerError
from models.recipes import digits, iris, sequence, tabular, transfer
from models.recipes.base import Recipe

RECIPES: dict[str, Recipe] = {
    module.RECIPE.name: module.RECIPE for module in (iris, digits, sequence, transfer, tabular)
}


def get_recipe(name: str) -> Recipe:
    """The recipe called name; raises TrainerError listing the known ones."""
    try:
        return RECIPES[name]
    except KeyError:
        raise TrainerError(f"unknown recipe {name!r} (choose from {', '.join(sorted(RECIPES))})") from None
