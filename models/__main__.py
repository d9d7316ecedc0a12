"""`python -m models` / `batchwise-models`: the trainer command line."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Run the trainer CLI with argv (default sys.argv[1:]); return the process exit code."""
    from models.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
