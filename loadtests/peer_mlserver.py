"""Run Seldon MLServer 1.7 as the benchmark peer: its own virtualenv, a custom TF runtime, start/stop on given ports.

MLServer pins an older protobuf than ours, so it never enters the project's venv: `ensure_venv()` builds
`.bench-venvs/mlserver` (gitignored) with `pip install mlserver==1.7.* tensorflow==2.21.*`.
`start_mlserver()` writes a throwaway model repository (settings.json, <model>/model-settings.json and a copy of
mlserver_runtime/runtime.py) with adaptive batching set like ours and `parallel_workers` explicit, starts
`mlserver start` bound to 127.0.0.1 and waits until the model is ready. `stop()` ends it and removes the folder.

By hand:  python loadtests/peer_mlserver.py check --saved-model DIR   (starts MLServer, checks one v2
ModelInfer answer against TensorFlow inside MLServer's venv, stops it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import grpc

from loadtests.servers import free_port

ROOT = Path(__file__).resolve().parents[1]
RUNTIME_DIR = Path(__file__).resolve().parent / "mlserver_runtime"
VENV_DIR = ROOT / ".bench-venvs" / "mlserver"
# uvloop 0.22+ makes asyncio.get_event_loop() raise in MLServer 1.7.1's parallel workers (they crash-loop).
REQUIREMENTS = ("mlserver==1.7.*", "tensorflow==2.21.*", "uvloop<0.22")
RUNTIME_CLASS = "runtime.TFSavedModelRuntime"
STOP_GRACE_S = 20.0


class MLServerProcess(subprocess.Popen):
    """A running `mlserver start`; `workdir` is its throwaway model repository, `model_name` the served model."""

    workdir: Path
    model_name: str
    http_port: int


def ensure_venv(venv_dir: Path = VENV_DIR) -> Path:
    """Create (once) the isolated MLServer virtualenv; return its python. Raises CalledProcessError if pip fails."""
    python = venv_dir / "bin" / "python"
    marker = venv_dir / ".installed"
    wanted = "\n".join(REQUIREMENTS)
    if marker.exists() and marker.read_text() == wanted:
        return python
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv_dir)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *REQUIREMENTS], check=True)
    marker.write_text(wanted)
    return python


def installed_version(venv_dir: Path = VENV_DIR) -> str | None:
    """MLServer's version in its venv (None if the venv cannot say)."""
    proc = subprocess.run([str(venv_dir / "bin" / "python"), "-c", "import mlserver; print(mlserver.__version__)"],
                          capture_output=True, text=True, check=False)
    return proc.stdout.strip() or None


def served_name(saved_model_dir: Path) -> str:
    """The model name Batchwise would serve: `<repo>/<model>/<version>` -> model, any other folder -> its name."""
    return saved_model_dir.parent.name if saved_model_dir.name.isdigit() else saved_model_dir.name


def write_repository(
    workdir: Path, saved_model_dir: Path, model_name: str, *, grpc_port: int, http_port: int, metrics_port: int,
    max_batch_size: int, max_batch_time_s: float, parallel_workers: int,
) -> None:
    """Write settings.json, <model_name>/model-settings.json and the runtime module into `workdir`."""
    server = {
        "debug": False,  # debug=True adds a per-call access log on the gRPC path: not a production setting
        "host": "127.0.0.1", "grpc_port": grpc_port, "http_port": http_port, "metrics_port": metrics_port,
        "parallel_workers": parallel_workers, "load_models_at_startup": True,
    }
    model = {
        "name": model_name, "implementation": RUNTIME_CLASS,
        "max_batch_size": max_batch_size, "max_batch_time": max_batch_time_s,
        "parameters": {"uri": str(saved_model_dir.resolve())},
    }
    (workdir / "settings.json").write_text(json.dumps(server, indent=2))
    model_dir = workdir / model_name
    model_dir.mkdir()
    (model_dir / "model-settings.json").write_text(json.dumps(model, indent=2))
    shutil.copy(RUNTIME_DIR / "runtime.py", model_dir / "runtime.py")


def start_mlserver(
    saved_model_dir: Path, grpc_port: int, *, max_batch_size: int, max_batch_time_s: float, parallel_workers: int,
    model_name: str | None = None, venv_dir: Path = VENV_DIR, ready_timeout_s: float = 240.0,
) -> subprocess.Popen:
    """Start MLServer serving `saved_model_dir` on 127.0.0.1:`grpc_port`; return once the model is ready.

    Adaptive batching: up to `max_batch_size` requests merged, waiting at most `max_batch_time_s`
    (MLServer counts requests, Batchwise counts rows: equal for one-row requests); 0 turns it off.
    The model is served as `model_name` (default: `served_name(saved_model_dir)`, as Batchwise names it).
    Builds the venv first if needed. Raises RuntimeError (with the log's tail) if MLServer exits or is not
    ready within `ready_timeout_s`; the process is stopped first.
    """
    python = ensure_venv(venv_dir)
    name = model_name or served_name(saved_model_dir)
    workdir = Path(tempfile.mkdtemp(prefix="mlserver-"))
    http_port = free_port()
    write_repository(
        workdir, saved_model_dir, name, grpc_port=grpc_port, http_port=http_port, metrics_port=free_port(),
        max_batch_size=max_batch_size, max_batch_time_s=max_batch_time_s, parallel_workers=parallel_workers,
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    log = open(workdir / "mlserver.log", "wb")  # noqa: SIM115 - the child owns it; closed when this process exits
    proc = MLServerProcess(
        [str(python.parent / "mlserver"), "start", str(workdir)],
        cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    proc.workdir, proc.model_name, proc.http_port = workdir, name, http_port
    try:
        _wait_ready(proc, grpc_port, ready_timeout_s)
    except BaseException as exc:
        tail = _log_tail(workdir)
        stop(proc)
        if not isinstance(exc, Exception):
            raise  # KeyboardInterrupt and friends: MLServer is stopped, pass them on
        raise RuntimeError(f"MLServer did not become ready ({exc}):\n{tail}") from None
    return proc


def _wait_ready(proc: MLServerProcess, grpc_port: int, timeout_s: float) -> None:
    url = f"http://127.0.0.1:{proc.http_port}/v2/models/{proc.model_name}/ready"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlserver exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                if reply.status == 200:
                    break
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    else:
        raise TimeoutError(f"{url} not ready after {timeout_s}s")
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        grpc.channel_ready_future(channel).result(timeout=max(1.0, deadline - time.monotonic()))


def _log_tail(workdir: Path, lines: int = 30) -> str:
    try:
        return "\n".join((workdir / "mlserver.log").read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def stop(proc: subprocess.Popen, grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM MLServer (it drains and stops its workers), SIGKILL its process group after `grace_s`; clean up."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the group start_mlserver created: MLServer and its workers
            proc.wait()
    workdir = getattr(proc, "workdir", None)
    if workdir is not None:
        shutil.rmtree(workdir, ignore_errors=True)


def check(saved_model_dir: Path, parallel_workers: int = 1) -> int:
    """Start MLServer, send v2 ModelInfer requests from its own venv, compare with TensorFlow; return the exit code."""
    port = free_port()
    proc = start_mlserver(saved_model_dir, port, max_batch_size=8, max_batch_time_s=0.002,
                          parallel_workers=parallel_workers)
    try:
        script = RUNTIME_DIR / "check_infer.py"
        args = [str(VENV_DIR / "bin" / "python"), str(script), f"127.0.0.1:{port}", proc.model_name,
                str(saved_model_dir)]
        return subprocess.run(args, check=False).returncode
    finally:
        stop(proc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("venv", help="create the MLServer virtualenv")
    check_parser = sub.add_parser("check", help="serve a SavedModel with MLServer and check one v2 answer")
    check_parser.add_argument("--saved-model", type=Path, required=True)
    check_parser.add_argument("--parallel-workers", type=int, default=1)
    args = parser.parse_args(argv)
    if args.command == "venv":
        print(ensure_venv())
        return 0
    return check(args.saved_model, args.parallel_workers)


if __name__ == "__main__":
    sys.exit(main())
