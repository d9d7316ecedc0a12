"""Shared trainer fixtures: each recipe is trained once per session, in-process, into one repository."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Trained:
    """A finished in-process run: its RunResult plus what it printed."""

    result: object
    stdout: str

    @property
    def card(self) -> dict:
        return self.result.card

    @property
    def path(self) -> Path:
        return self.result.path

    @property
    def model(self):
        return self.result.model


def train(*argv: str) -> Trained:
    """Run `train <argv>` in-process and capture its output."""
    from models.cli import train as cli_train

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        result = cli_train([str(arg) for arg in argv])
    return Trained(result, out.getvalue())


def run_cli(*argv: str, env: dict | None = None, timeout_s: float = 240) -> subprocess.CompletedProcess:
    """Run `python -m models <argv>` as a real subprocess."""
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    return subprocess.run([sys.executable, "-m", "models", *map(str, argv)], capture_output=True, text=True,
                          cwd=ROOT, env=full_env, timeout=timeout_s, check=False)


@pytest.fixture(scope="session")
def repository(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("repository")


@pytest.fixture(scope="session")
def iris_run(repository) -> Trained:
    return train("iris", "--repository", repository)


@pytest.fixture(scope="session")
def digits_run(repository) -> Trained:
    return train("digits", "--repository", repository)


@pytest.fixture(scope="session")
def sequence_run(repository) -> Trained:
    # float32 and int8 only: each conversion of the unrolled LSTM costs seconds, and int8 is the risky one.
    return train("sequence", "--repository", repository, "--epochs", "5", "--variants", "float32,int8", "--quiet")


@pytest.fixture(scope="session")
def transfer_run(repository) -> Trained:
    return train("transfer", "--repository", repository, "--variants", "float32",
                 "--checkpoint-dir", repository.parent / "checkpoints")


@pytest.fixture(scope="session")
def train_model():
    """The in-process `train` helper, as a fixture."""
    return train


@pytest.fixture(scope="session")
def cli():
    """The subprocess `python -m models` helper, as a fixture."""
    return run_cli
