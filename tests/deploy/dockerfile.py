"""A small Dockerfile reader for tests: stages, and the final stage's ENV, ENTRYPOINT, CMD and HEALTHCHECK."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Stage:
    """One FROM ... stage: its base image, optional name, and (INSTRUCTION, arguments) in order."""

    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, instruction: str) -> list[str]:
        """Arguments of every `instruction` in this stage, in order."""
        return [rest for inst, rest in self.instructions if inst == instruction]

    def env(self) -> dict[str, str]:
        """Every ENV key=value of this stage (later values win)."""
        pairs = [item for rest in self.args("ENV") for item in shlex.split(rest)]
        return dict(pair.split("=", 1) for pair in pairs)

    def exec_form(self, instruction: str) -> list[str] | None:
        """The last ENTRYPOINT or CMD as an exec-form list; None if absent. Raises ValueError for shell form."""
        found = self.args(instruction)
        if not found:
            return None
        value = json.loads(found[-1])
        if not isinstance(value, list):
            raise ValueError(f"{instruction} must use the exec (JSON) form")
        return value

    def healthcheck(self) -> tuple[dict[str, str], list[str] | None]:
        """HEALTHCHECK options (e.g. {"timeout": "5s"}) and its exec-form command; (…, None) for NONE."""
        (rest,) = self.args("HEALTHCHECK")
        if rest.strip() == "NONE":
            return {}, None
        options_text, _, command = rest.partition("CMD ")
        options = dict(opt[2:].split("=", 1) for opt in options_text.split())
        return options, json.loads(command)


def _logical_lines(text: str) -> list[str]:
    lines, current = [], ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue  # comments may sit inside continued instructions too
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append(current + stripped)
        current = ""
    return lines


def global_args(path: Path) -> dict[str, str]:
    """The ARGs declared before the first FROM, with their defaults ("" when none)."""
    found = {}
    for line in _logical_lines(path.read_text()):
        instruction, _, rest = line.partition(" ")
        if instruction.upper() == "FROM":
            break
        if instruction.upper() == "ARG":
            name, _, default = rest.strip().partition("=")
            found[name] = default.strip('"')
    return found


def parse(path: Path) -> list[Stage]:
    """The stages of the Dockerfile at `path` (parser directives and comments dropped).

    A FROM that names a global ARG (`FROM ${PYTHON_IMAGE}`) gets that ARG's default as its base.
    """
    stages: list[Stage] = []
    defaults = global_args(path)
    for line in _logical_lines(path.read_text()):
        instruction, _, rest = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            match = re.match(r"^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$", rest.strip(), re.IGNORECASE)
            if match is None:
                raise ValueError(f"{path}: cannot read FROM {rest}")
            base = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: defaults[m.group(1) or m.group(2)], match.group(1))
            stages.append(Stage(base=base, name=match.group(2)))
        elif stages:
            stages[-1].instructions.append((instruction, rest.strip()))
    return stages
