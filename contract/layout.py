"""The model repository layout, read from the schema file: model names, version folders, artifact paths.

<repository>/<model>/<version>/saved_model.pb        the SavedModel (variant "savedmodel")
<repository>/<model>/<version>/tflite/<variant>.tflite  a LiteRT variant
<repository>/<model>/<version>/model_card.json       the model card (contract.card)
"""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

SCHEMA: dict[str, Any] = json.loads(resources.files("contract").joinpath("model_card.schema.json").read_text())
_LAYOUT = SCHEMA["x-batchwise-layout"]
_NAME = SCHEMA["$defs"]["modelName"]

CARD_FILE: str = _LAYOUT["card_file"]
SAVEDMODEL_FILE: str = _LAYOUT["savedmodel_file"]
TFLITE_DIR: str = _LAYOUT["tflite_dir"]
SAVEDMODEL: str = _LAYOUT["savedmodel_variant"]
KNOWN_VARIANTS: tuple[str, ...] = tuple(_LAYOUT["variants"])
TFLITE_VARIANTS: tuple[str, ...] = tuple(v for v in KNOWN_VARIANTS if v != SAVEDMODEL)
MODEL_NAME_RE = re.compile(_NAME["pattern"])
MODEL_NAME_RULE: str = _NAME["description"]
MAX_VERSION = 2**63 - 1


def is_model_name(name: str) -> bool:
    """True if `name` may name a model folder (and a model on the wire)."""
    return MODEL_NAME_RE.fullmatch(name) is not None and ".." not in name


def parse_version(name: str) -> int | None:
    """The version a folder name stands for (a positive integer without leading zeros), else None."""
    if not name.isdigit() or name.startswith("0"):
        return None
    version = int(name)
    return version if 0 < version <= MAX_VERSION else None


def variant_relpath(variant: str) -> str:
    """Where `variant` lives inside a version folder ("." for the SavedModel). Raises ValueError if unknown."""
    if variant == SAVEDMODEL:
        return "."
    if variant not in TFLITE_VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; known variants: {', '.join(KNOWN_VARIANTS)}")
    return f"{TFLITE_DIR}/{variant}{_LAYOUT['tflite_suffix']}"


def variant_path(version_dir: Path, variant: str) -> Path:
    """The artifact path of `variant` in `version_dir` (the folder itself for the SavedModel)."""
    relative = variant_relpath(variant)
    return version_dir if relative == "." else version_dir / relative


def has_artifact(version_dir: Path) -> bool:
    """True when the folder holds a SavedModel or at least one TFLite file."""
    return (version_dir / SAVEDMODEL_FILE).is_file() or any((version_dir / TFLITE_DIR).glob("*.tflite"))
