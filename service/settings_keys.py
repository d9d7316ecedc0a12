"""Unknown setting keys: found at any level of the settings tree, from any source, with the nearest valid key.

Works from the pydantic models' fields alone, so a section or a field added later is covered
without code here: a field whose type is a model is walked into, and so is every value of a
`dict[str, <model>]` field (e.g. `[models.<name>]`).
"""

from __future__ import annotations

import difflib
import tomllib
import typing
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import UnionType
from typing import Any

from pydantic import BaseModel

ENV_PREFIX = "BATCHWISE_"
ENV_DELIMITER = "__"


class UnknownSettingError(ValueError):
    """An unknown key: `key` is its dotted path, `nearest` the closest valid dotted path (or None)."""

    def __init__(self, key: str, nearest: str | None, where: str = "") -> None:
        self.key, self.nearest = key, nearest
        hint = f"; did you mean {nearest!r}?" if nearest else ""
        source = f" ({where})" if where else ""
        super().__init__(f"unknown setting {key!r}{source}{hint}")


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The model class in `annotation` (also inside `X | None`), else None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, UnionType):
        return next((m for arg in typing.get_args(annotation) if (m := _model_in(arg))), None)
    return None


def _dict_model(annotation: Any) -> type[BaseModel] | None:
    """V for a `dict[str, V]` annotation whose V is a model, else None."""
    if typing.get_origin(annotation) is dict:
        return _model_in(typing.get_args(annotation)[1])
    return None


def _unknown(model: type[BaseModel], data: Mapping[str, Any], path: tuple[str, ...]) -> Iterator[UnknownSettingError]:
    for key, value in data.items():
        field = model.model_fields.get(key)
        if field is None:
            nearest = difflib.get_close_matches(key, list(model.model_fields), n=1, cutoff=0.6)
            yield UnknownSettingError(".".join((*path, key)), ".".join((*path, nearest[0])) if nearest else None)
            continue
        section, entries = _model_in(field.annotation), _dict_model(field.annotation)
        if section is not None and isinstance(value, Mapping):
            yield from _unknown(section, value, (*path, key))
        elif entries is not None and isinstance(value, Mapping):
            for name, entry in value.items():
                if isinstance(entry, Mapping):
                    yield from _unknown(entries, entry, (*path, key, str(name)))


def check_keys(model: type[BaseModel], data: Mapping[str, Any]) -> None:
    """Raise UnknownSettingError for the first key in `data` (nested) that `model` has no field for."""
    error = next(_unknown(model, data, ()), None)
    if error is not None:
        raise error


def _nested(parts: Sequence[str], value: Any = None) -> dict[str, Any]:
    result: Any = value
    for part in reversed(parts):
        result = {part: result}
    return result


def check_env(model: type[BaseModel], environ: Mapping[str, str]) -> None:
    """Refuse BATCHWISE_* variables that address no setting.

    A name with the `__` delimiter (BATCHWISE_<SECTION>__<KEY>...) always addresses a setting, so
    every part must exist. A name without one is a setting only if it is a top-level field; other
    such names (BATCHWISE_FUZZ_EXAMPLES, ...) belong to our tools and are left alone, unless they
    are one typo away from a field (BATCHWISE_CONFIG_FLE).
    """
    for name in sorted(environ):
        if not name.upper().startswith(ENV_PREFIX):
            continue
        parts = name[len(ENV_PREFIX) :].lower().split(ENV_DELIMITER)
        try:
            if len(parts) > 1:
                check_keys(model, _nested(parts, {}))
            elif parts[0] not in model.model_fields:
                nearest = difflib.get_close_matches(parts[0], list(model.model_fields), n=1, cutoff=0.85)
                if nearest:
                    raise UnknownSettingError(parts[0], nearest[0])
        except UnknownSettingError as exc:
            raise UnknownSettingError(exc.key, exc.nearest, f"environment variable {name}") from None


def check_file(model: type[BaseModel], path: Path) -> None:
    """Refuse keys of the TOML file at `path` that address no setting. Raises tomllib.TOMLDecodeError too."""
    with path.open("rb") as handle:
        data = tomllib.load(handle)
    try:
        check_keys(model, data)
    except UnknownSettingError as exc:
        raise UnknownSettingError(exc.key, exc.nearest, f"config file {path}") from None


def check_cli(model: type[BaseModel], args: Sequence[str]) -> None:
    """Refuse `--section.key` flags that address no setting (argparse alone names no nearest key)."""
    for arg in args:
        if not arg.startswith("--") or arg in ("--help", "--"):
            continue
        parts = arg[2:].split("=", 1)[0].replace("-", "_").split(".")
        for candidate in (parts, [parts[0].removeprefix("no_"), *parts[1:]]):  # --no-x.flag for booleans
            try:
                check_keys(model, _nested(candidate))
                break
            except UnknownSettingError as exc:
                error = exc
        else:
            flag = lambda key: "--" + key.replace("_", "-")  # noqa: E731
            raise UnknownSettingError(
                error.key, error.nearest and flag(error.nearest), f"command-line flag {arg.split('=', 1)[0]}"
            )
