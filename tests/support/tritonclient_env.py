"""Run client scripts with Triton's `tritonclient` from its own virtualenv, built once and cached outside git.

tritonclient pins a protobuf that our generated code does not accept, so it never enters the
project's venv. `ensure_venv()` builds `<repo>/.cache/tritonclient-<version>/` (gitignored) with
`pip install tritonclient[grpc,http]==<version>` on first use (pip reaches PyPI in CI) and reuses it
afterwards; a lock file makes concurrent builders (two pytest runs, a bench) wait for one another,
and the venv is built under a temporary name and renamed, so a half-built venv is never used.

`run_client(script, *args)` runs a Python client script (a file path, or source text) with that
venv's interpreter in a subprocess and returns the JSON document the script prints as the last line
of its stdout. The script gets `args` as sys.argv[1:]; a non-zero exit raises ClientScriptError
carrying stdout and stderr. Session-fixture friendly:

    @pytest.fixture(scope="session")
    def tritonclient_python():
        return ensure_venv()

    def test_x(tritonclient_python):
        answer = run_client(SCRIPT, "127.0.0.1:8500", python=tritonclient_python)
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TRITONCLIENT_VERSION = "2.73.0"
ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = ROOT / ".cache"
INSTALL_TIMEOUT_S = 900.0


class ClientScriptError(RuntimeError):
    """A client script exited non-zero or printed no JSON; the message carries its output."""


def venv_dir(version: str = TRITONCLIENT_VERSION, cache_dir: Path = CACHE_DIR) -> Path:
    """Where the venv for `version` lives."""
    return cache_dir / f"tritonclient-{version}"


def ensure_venv(version: str = TRITONCLIENT_VERSION, cache_dir: Path = CACHE_DIR) -> Path:
    """The interpreter of a venv with tritonclient[grpc,http]==`version`, building it if missing.

    Blocking (a first build takes a minute or two). Raises subprocess.CalledProcessError if pip fails.
    """
    target = venv_dir(version, cache_dir)
    python = target / "bin" / "python"
    if (target / ".installed").exists():
        return python
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _locked(cache_dir / f"{target.name}.lock"):
        if not (target / ".installed").exists():  # another process may have built it meanwhile
            _build(target, version)
    return python


def _build(target: Path, version: str) -> None:
    staging = Path(tempfile.mkdtemp(prefix=f"{target.name}.", dir=target.parent))
    try:
        subprocess.run([sys.executable, "-m", "venv", str(staging)], check=True)
        pip = [str(staging / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        subprocess.run([*pip, f"tritonclient[grpc,http]=={version}"], check=True, timeout=INSTALL_TIMEOUT_S)
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)  # venvs hold their own path in scripts; we only run bin/python, which is fine
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    (target / ".installed").write_text(version + "\n")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def run_client(
    script: str | Path,
    *args: str,
    python: Path | None = None,
    timeout_s: float = 120.0,
    env: dict[str, str] | None = None,
) -> Any:
    """Run `script` (a path, or Python source) with tritonclient's interpreter; return its last stdout line as JSON.

    `env` adds to (not replaces) the environment. Raises ClientScriptError on a non-zero exit or
    when the last line is not JSON, and subprocess.TimeoutExpired after `timeout_s`.
    """
    interpreter = python or ensure_venv()
    command = [str(interpreter), str(script)] if isinstance(script, Path) else [str(interpreter), "-c", script]
    # No PYTHONPATH from the project: the script must see tritonclient's protobuf, not ours.
    child_env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}} | (env or {})
    proc = subprocess.run(
        [*command, *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env=child_env,
        cwd=tempfile.gettempdir(),
        check=False,
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise ClientScriptError(
            f"client script exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    try:
        return json.loads(lines[-1])
    except json.JSONDecodeError as exc:
        raise ClientScriptError(f"client script printed no JSON ({exc})\nstdout:\n{proc.stdout}") from None
