"""How the HTTP server library and the JSON library were chosen (docs/protocols.md quotes the figures).

    .venv/bin/python -m loadtests.http_choice servers   # needs h2load (Debian nghttp2-client) and uvicorn+starlette
    .venv/bin/python -m loadtests.http_choice json
    .venv/bin/python -m loadtests.http_choice decode

`servers`: each candidate answers the same TF Serving REST predict (a one-row MNIST body, ~6 KB of
JSON, parsed with orjson; a fixed 10-float reply) in its own process on uvloop; h2load (C, HTTP/1.1,
64 connections) drives it for 8 s per point, in ABBA order, twice. `json`: decode that body and encode
a 10-float reply and a 784-float numpy array with orjson and the standard library, interleaved.
`decode`: that body, and the same values laid out as MNIST's (1, 28, 28, 1), to the float32 array a
model takes: through orjson's lists and np.asarray (the first REST path) and through
service/http/jsondoc.py (simdjson), interleaved.
uvicorn and starlette are not dependencies: install them by hand to rerun the comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import orjson

ROW = np.random.default_rng(0).random((1, 784)).round(4).tolist()
BODY = json.dumps({"instances": ROW}).encode()
REPLY = orjson.dumps({"predictions": [[0.1] * 10]})
PATH = "/v1/models/mnist:predict"
KINDS = ("aiohttp-lowlevel", "aiohttp-web", "uvicorn-starlette", "uvicorn-asgi")


def _work(body: bytes) -> bytes:
    document = orjson.loads(body)
    np.asarray(document["instances"], dtype=np.float32)
    return REPLY


def serve(kind: str, port: int) -> None:
    """Run one candidate on 127.0.0.1:port until killed."""
    import uvloop

    if kind.startswith("uvicorn"):
        import uvicorn

        app = _starlette_app() if kind == "uvicorn-starlette" else _asgi_app
        config = uvicorn.Config(app, port=port, loop="uvloop", http="httptools", access_log=False, log_level="warning")
        uvicorn.Server(config).run()
        return
    uvloop.run(_aiohttp(kind, port))


async def _aiohttp(kind: str, port: int) -> None:
    from aiohttp import web

    async def handle(request: web.BaseRequest) -> web.Response:
        return web.Response(body=_work(await request.read()), content_type="application/json")

    if kind == "aiohttp-lowlevel":
        server = web.Server(handle, access_log=None)
        await asyncio.get_running_loop().create_server(server, "127.0.0.1", port)
    else:
        app = web.Application()
        app.router.add_post(r"/v1/models/{model:[^/:]+}:predict", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


def _starlette_app():
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    async def predict(request):
        return Response(_work(await request.body()), media_type="application/json")

    return Starlette(routes=[Route("/v1/models/{model}:predict", predict, methods=["POST"])])


async def _asgi_app(scope, receive, send):
    if scope["type"] != "http":
        return
    chunks, more = [], True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    reply = _work(b"".join(chunks))
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(reply)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": reply})


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_for_port(port: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port} after {timeout_s} s")


def _h2load(port: int, body_file: Path, seconds: int) -> tuple[float, int]:
    out = subprocess.run(
        [
            "h2load",
            "--h1",
            "-c",
            "64",
            "-t",
            "1",
            "-D",
            str(seconds),
            "--warm-up-time",
            "2",
            "-d",
            str(body_file),
            "-H",
            "content-type: application/json",
            f"http://127.0.0.1:{port}{PATH}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    ok = re.search(r"(\d+) succeeded, (\d+) failed", out)
    if ok is None or int(ok.group(2)) or not int(ok.group(1)):
        raise RuntimeError(f"h2load saw failures:\n{out}")
    return float(re.search(r"finished in [\d.]+s, ([\d.]+) req/s", out).group(1)), int(ok.group(1))


def compare_servers(seconds: int, rounds: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """(req/s, server CPU microseconds per request) per candidate and run."""
    from loadtests.servers import free_port

    order = [*KINDS, *reversed(KINDS)] * rounds
    results: dict[str, list[float]] = {kind: [] for kind in KINDS}
    cpu_us: dict[str, list[float]] = {kind: [] for kind in KINDS}
    with tempfile.TemporaryDirectory() as folder:
        body_file = Path(folder) / "body.json"
        body_file.write_bytes(BODY)
        for kind in order:
            port = free_port()
            proc = subprocess.Popen([sys.executable, "-m", "loadtests.http_choice", "serve", kind, str(port)])
            try:
                _wait_for_port(port)
                before_s = _cpu_s(proc.pid)
                rate, done = _h2load(port, body_file, seconds)
                results[kind].append(rate)
                cpu_us[kind].append((_cpu_s(proc.pid) - before_s) / done * 1e6)  # includes h2load's warm-up
                print(f"{kind:20s} {rate:8.0f} req/s {cpu_us[kind][-1]:7.1f} us CPU/request", flush=True)
            finally:
                proc.terminate()
                proc.wait(10)
    return results, cpu_us


def compare_json(rounds: int, repeat: int = 2000) -> dict[str, list[float]]:
    """Microseconds per (decode request + encode reply + encode a 784-float array), per library, ABBA."""
    array = np.random.default_rng(1).random(784, dtype=np.float32)

    def with_orjson():
        orjson.loads(BODY)
        orjson.dumps({"predictions": [[0.1] * 10]})
        orjson.dumps({"predictions": array}, option=orjson.OPT_SERIALIZE_NUMPY)

    def with_json():
        json.loads(BODY)
        json.dumps({"predictions": [[0.1] * 10]}).encode()
        json.dumps({"predictions": array.tolist()}).encode()

    candidates = {"orjson": with_orjson, "json": with_json}
    return _interleaved(candidates, rounds, repeat)


def compare_decode(rounds: int, repeat: int = 2000) -> dict[str, list[float]]:
    """Microseconds per decode of a one-row body into the model's float32 input, per path and input
    layout (flat (1, 784) as BODY, and MNIST's (1, 28, 28, 1)), ABBA."""
    from service.http import jsondoc
    from service.http.tensors import numeric_array

    float32 = np.dtype(np.float32)
    image = json.dumps({"instances": np.asarray(ROW).reshape(1, 28, 28, 1).tolist()}).encode()
    candidates = {}
    for layout, body in (("(1, 784)", BODY), ("(1, 28, 28, 1)", image)):
        candidates[f"orjson+np.asarray {layout}"] = partial(_decode, orjson.loads, body, float32, numeric_array)
        candidates[f"simdjson/jsondoc {layout}"] = partial(_decode, jsondoc.loads, body, float32, numeric_array)
    return _interleaved(candidates, rounds, repeat)


def _interleaved(candidates: dict, rounds: int, repeat: int) -> dict[str, list[float]]:
    """Microseconds per call of each candidate, `repeat` calls a run, in ABBA order `rounds` times."""
    results: dict[str, list[float]] = {name: [] for name in candidates}
    for name in [*candidates, *reversed(candidates)] * rounds:
        started = time.perf_counter()
        for _ in range(repeat):
            candidates[name]()
        results[name].append((time.perf_counter() - started) / repeat * 1e6)
    return results


def _decode(parse, body: bytes, dtype: np.dtype, numeric_array) -> np.ndarray:
    return numeric_array(parse(body)["instances"], dtype, "instances")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["servers", "json", "decode", "serve"])
    parser.add_argument("args", nargs="*")
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    options = parser.parse_args()
    if options.what == "serve":
        serve(options.args[0], int(options.args[1]))
        return
    if options.what in ("json", "decode"):
        compare = compare_json if options.what == "json" else compare_decode
        tables = {"us per request": compare(options.rounds * 3)}
    else:
        rates, cpu = compare_servers(options.seconds, options.rounds)
        tables = {"req/s": rates, "us server CPU per request": cpu}
    for unit, results in tables.items():
        for name, values in results.items():
            print(f"{name:20s} median {np.median(values):9.1f} {unit}  runs {[round(v, 1) for v in values]}")


if __name__ == "__main__":
    main()
