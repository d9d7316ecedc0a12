"""Train and publish the demo models (iris, digits, with TFLite variants) unless the repository has models.

Usage: python scripts/demo_models.py --repository DIR   (what `make demo-models` and `make serve` run)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # runnable from a checkout without an install

from models.errors import TrainerError  # noqa: E402
from models.export import existing_versions  # noqa: E402

DEMO_MODELS = ("iris", "digits")


def published_models(repository: Path) -> list[str]:
    """Names of the models in repository that have at least one published version."""
    if not repository.is_dir():
        return []
    return sorted(p.name for p in repository.iterdir() if p.is_dir() and existing_versions(p))


def main(argv: list[str] | None = None) -> int:
    """Publish the demo models into an empty repository; do nothing if it already has models."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repository", type=Path, required=True, help="model repository root folder")
    args = parser.parse_args(argv)
    present = published_models(args.repository)
    if present:
        print(f"{args.repository} already has models ({', '.join(present)}): not training the demo models")
        return 0
    from models.cli import train

    started_s = time.monotonic()
    for recipe in DEMO_MODELS:
        try:
            train([recipe, "--repository", str(args.repository), "--quiet"])
        except TrainerError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    print(f"demo models {', '.join(DEMO_MODELS)} published in {time.monotonic() - started_s:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
