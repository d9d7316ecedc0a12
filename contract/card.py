"""The model card: build it (trainer, benchmark, tests), validate it against the schema, read it typed (server).

Every card goes through `validate`: `write_card` refuses to write a card that breaks the schema,
and `load_card` refuses to read one, naming the file and the field.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from jsonschema import Draft202012Validator

from contract.layout import CARD_FILE, SCHEMA, variant_relpath

SCHEMA_VERSION: int = SCHEMA["properties"]["schema_version"]["const"]
_VALIDATOR = Draft202012Validator(SCHEMA)


class CardError(ValueError):
    """A model card that this reader refuses: `path` is the file, `field` the dotted field ("" = whole card)."""

    def __init__(self, path: str | Path, field_name: str, reason: str) -> None:
        self.path, self.field, self.reason = str(path), field_name, reason
        where = f" field {field_name!r}" if field_name else ""
        super().__init__(f"{path}: model card{where}: {reason}")


@dataclass(frozen=True)
class VariantInfo:
    """One `variants.<name>` entry: whether the trainer's quality gate published it, and its I/O types."""

    published: bool
    interface: str | None = None
    refused_reason: str | None = None
    io: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Samples:
    """A few input rows and the SavedModel's outputs on them (warm-up and the consistency guard)."""

    inputs: Mapping[str, list]
    outputs: Mapping[str, list]


@dataclass(frozen=True)
class ModelCard:
    """The fields the server uses, typed; `raw` keeps the whole validated JSON object for people and tools."""

    schema_version: int
    name: str
    version: int
    task: str | None
    signature_name: str | None
    variants: Mapping[str, VariantInfo]
    samples: Samples | None
    raw: Mapping[str, Any]

    @property
    def published_variants(self) -> frozenset[str]:
        """Variants the trainer's quality gate published."""
        return frozenset(name for name, info in self.variants.items() if info.published)

    @classmethod
    def from_dict(cls, card: Mapping[str, Any], source: str | Path = "<card>") -> ModelCard:
        """Validate `card` (see `validate`) and type it. Raises CardError."""
        validate(card, source)
        samples = card.get("samples")
        return cls(
            schema_version=card["schema_version"],
            name=card["name"],
            version=card["version"],
            task=card.get("task"),
            signature_name=(card.get("signature") or {}).get("name"),
            variants={
                name: VariantInfo(
                    info["published"], info.get("interface"), info.get("refused_reason"), info.get("io", {})
                )
                for name, info in card.get("variants", {}).items()
            },
            samples=Samples(samples["inputs"], samples["outputs"]) if samples else None,
            raw=card,
        )


def validate(card: object, source: str | Path = "<card>") -> None:
    """Raise CardError (naming `source` and the field) unless `card` is a valid card of a major we read.

    An unknown major `schema_version` is refused before the rest is looked at: its fields may mean
    something else.
    """
    if not isinstance(card, Mapping):
        raise CardError(source, "", f"must be a JSON object, not {type(card).__name__}")
    version = card.get("schema_version")
    if isinstance(version, int) and not isinstance(version, bool) and version != SCHEMA_VERSION:
        raise CardError(
            source, "schema_version", f"major version {version} is not supported (this reader knows {SCHEMA_VERSION})"
        )
    error = next(iter(sorted(_VALIDATOR.iter_errors(card), key=_error_order)), None)
    if error is not None:
        path = [str(part) for part in error.absolute_path]
        if error.validator == "required":
            path.append(next(name for name in error.validator_value if name not in error.instance))
        raise CardError(source, ".".join(path), error.message)


def _error_order(error) -> tuple[int, str]:
    return (len(error.absolute_path), ".".join(str(p) for p in error.absolute_path))


def load_card(version_dir: Path) -> ModelCard | None:
    """The version's card, or None if the folder has none. Raises CardError if unreadable or invalid."""
    path = Path(version_dir) / CARD_FILE
    if not path.is_file():
        return None
    try:
        card = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CardError(path, "", f"unreadable: {exc}") from exc
    return ModelCard.from_dict(card, path)


def write_card(version_dir: Path, card: Mapping[str, Any]) -> Path:
    """Validate `card`, write it as indented JSON into `version_dir` and fsync it; return the file.

    Raises CardError (nothing is written) if the card breaks the schema.
    """
    path = Path(version_dir) / CARD_FILE
    validate(card, path)
    with path.open("w") as handle:
        json.dump(card, handle, indent=2)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    return path


def variant_entry(variant: str, *, published: bool, interface: str = "float", **measures: Any) -> dict[str, Any]:
    """A `variants.<variant>` entry with its repository path; `measures` adds accuracy, size_bytes, io, ..."""
    return {"path": variant_relpath(variant), "interface": interface, "published": published, **measures}


def new_card(
    name: str,
    version: int,
    *,
    task: str,
    signature: str | Mapping[str, Any],
    variants: Mapping[str, Mapping[str, Any]],
    samples: tuple[Mapping[str, Any], Mapping[str, Any]] | None = None,
    **sections: Any,
) -> dict[str, Any]:
    """A schema_version-current card; `signature` is a name or a full section, `samples` (inputs, outputs)
    are arrays (converted to lists); `sections` adds any other card field (recipe, data, ...)."""
    card: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "name": name, "version": version, "task": task}
    card["signature"] = {"name": signature} if isinstance(signature, str) else dict(signature)
    card["variants"] = {key: dict(value) for key, value in variants.items()}
    if samples is not None:
        card["samples"] = {"inputs": _lists(samples[0]), "outputs": _lists(samples[1])}
    card.update(sections)
    return card


def _lists(arrays: Mapping[str, Any]) -> dict[str, list]:
    return {key: np.asarray(value).tolist() for key, value in arrays.items()}
