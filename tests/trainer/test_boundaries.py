"""models/ and service/ meet only through the repository on disk: neither imports the other."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _imported_packages(folder: Path) -> set[str]:
    names = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
    return names


def test_models_never_imports_service():
    assert "service" not in _imported_packages(ROOT / "models")


def test_service_never_imports_models():
    assert "models" not in _imported_packages(ROOT / "service")
