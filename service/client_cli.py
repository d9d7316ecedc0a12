"""The `batchwise-client` command line: argument parsing, JSON/.npy inputs, JSON output (no TensorFlow)."""

from __future__ import annotations

import argparse
import base64
import json
import sys
from pathlib import Path

import numpy as np

from service.client import DEFAULT_TARGET, BatchwiseClient, ClientError, Prediction
from service.errors import InvalidArgument, ServingError
from service.rest_client import DEFAULT_REST_TARGET, RestClient, is_rest_target

NPY_SUFFIX = ".npy"
DESCRIPTION = (
    "Talk to a Batchwise (or TensorFlow Serving) server over gRPC, or over TF Serving's REST API with\n"
    "--rest or an http(s):// target. Prints one line of JSON on stdout; on failure prints\n"
    "`error: <GRPC_CODE>: <message>` on stderr (HTTP statuses as their gRPC names) and exits 1."
)
EXAMPLES = """examples:
  batchwise-client predict --model digits --input 'pixels=[[0.0, 1.0]]'
  batchwise-client predict --model digits --input pixels=batch.npy --output-filter probabilities
  batchwise-client metadata --model digits --version 3
  batchwise-client status --model digits --target 10.0.0.5:8500 --ca-cert ca.pem --token-file token.txt
  batchwise-client predict --rest --model digits --input 'pixels=[[0.0, 1.0]]'
  batchwise-client metadata --model digits --target https://10.0.0.5:8501 --ca-cert ca.pem
"""


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree: predict, metadata and status, each with the connection and model options."""
    connection = argparse.ArgumentParser(add_help=False)
    group = connection.add_argument_group("connection")
    group.add_argument(
        "--target", help=f"server host:port (default {DEFAULT_TARGET}), or http[s]://host:port for REST"
    )
    group.add_argument(
        "--rest", action="store_true", help=f"use TF Serving's REST API (default target {DEFAULT_REST_TARGET})"
    )
    group.add_argument("--timeout-s", type=_positive_float, default=10.0, help="per-call deadline (default 10)")
    group.add_argument("--token", help="bearer token, sent as `authorization: Bearer TOKEN`")
    group.add_argument("--token-file", type=Path, help="read the bearer token from this file (keeps it out of ps)")
    group.add_argument("--ca-cert", type=Path, help="PEM CA bundle: use TLS and trust these roots")
    group.add_argument("--client-cert", type=Path, help="PEM client certificate for mutual TLS")
    group.add_argument("--client-key", type=Path, help="PEM client private key for mutual TLS")
    group.add_argument("--tls-server-name", help="expected server name when it differs from the target host")
    group.add_argument("--variant", help="ask for a variant, sent as `x-batchwise-variant` metadata")
    by_version, by_version_or_label = _model_options(labels=False), _model_options(labels=True)

    parser = argparse.ArgumentParser(prog="batchwise-client", description=DESCRIPTION, epilog=EXAMPLES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="{predict,metadata,status}")
    predict = commands.add_parser(
        "predict", parents=[connection, by_version_or_label], help="run Predict and print the outputs"
    )
    predict.add_argument("--signature", default="", help="signature name (default serving_default)")
    predict.add_argument(
        "--input", action="append", default=[], metavar="NAME=JSON|NAME=FILE.npy",
        help="an input as JSON nested lists (cast to the signature's dtype) or a .npy file (sent as is)",
    )
    predict.add_argument("--json-file", type=Path, help='a JSON file holding {"input name": nested lists, ...}')
    predict.add_argument("--output-filter", action="append", default=[], metavar="NAME", help="only this output")
    predict.set_defaults(run=run_predict)
    metadata = commands.add_parser(
        "metadata", parents=[connection, by_version_or_label], help="print the signature_def map"
    )
    metadata.set_defaults(run=run_metadata)
    status = commands.add_parser("status", parents=[connection, by_version], help="print each version's state")
    status.set_defaults(run=run_status)
    return parser


def _model_options(*, labels: bool) -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("--model", required=True, help="model name")
    version = options.add_mutually_exclusive_group()
    version.add_argument("--version", type=_positive_int, help="a specific version (default: the latest)")
    if labels:
        version.add_argument("--label", help="a version label such as stable or canary")
    return options


def run(argv: list[str] | None = None) -> int:
    """Parse argv, make the call, print JSON on stdout; print `error: CODE: message` on stderr and return 1."""
    args = build_parser().parse_args(argv)
    try:
        with _connect(args) as client:
            result = args.run(client, args)
    except ClientError as exc:
        return _fail(exc.code, exc.message)
    except ServingError as exc:
        return _fail(exc.code.value, exc.message)
    except (OSError, ValueError) as exc:  # unreadable TLS or token files, half a client key pair
        return _fail("INVALID_ARGUMENT", str(exc))
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


def run_predict(client: BatchwiseClient | RestClient, args: argparse.Namespace) -> dict:
    """The predict command: load the inputs, cast the JSON ones to the signature's dtypes, call, format."""
    inputs, from_json = load_inputs(args.input, args.json_file)
    if from_json:
        dtypes = client.input_dtypes(args.model, signature=args.signature, version=args.version, label=args.label)
        inputs = {name: cast_to(name, value, dtypes.get(name)) if name in from_json else value
                  for name, value in inputs.items()}
    result = client.predict_detailed(
        args.model, inputs, version=args.version, label=args.label, signature=args.signature,
        output_filter=args.output_filter, variant=args.variant,
    )
    return prediction_json(result)


def run_metadata(client: BatchwiseClient | RestClient, args: argparse.Namespace) -> dict:
    return client.metadata(args.model, version=args.version, label=args.label)


def run_status(client: BatchwiseClient | RestClient, args: argparse.Namespace) -> dict:
    return {"model": args.model, **client.status(args.model, version=args.version)}


def load_inputs(flags: list[str], json_file: Path | None) -> tuple[dict[str, np.ndarray], set[str]]:
    """Inputs from --input flags and --json-file, and the names that came from JSON.

    Raises InvalidArgument for malformed flags, unreadable files, ragged lists or a name given twice.
    """
    named: list[tuple[str, np.ndarray, bool]] = []
    for flag in flags:
        name, sep, value = flag.partition("=")
        if not sep or not name:
            raise InvalidArgument(f"--input {flag!r}: expected NAME=JSON or NAME=FILE{NPY_SUFFIX}")
        if value.lower().endswith(NPY_SUFFIX):
            named.append((name, _load_npy(name, Path(value)), False))
        else:
            named.append((name, json_to_array(name, _parse_json(f"--input {name}", value)), True))
    if json_file is not None:
        document = _parse_json(f"--json-file {json_file}", _read_text(json_file))
        if not isinstance(document, dict):
            raise InvalidArgument(f"--json-file {json_file}: expected an object {{name: nested lists}}")
        named.extend((name, json_to_array(name, value), True) for name, value in document.items())
    inputs: dict[str, np.ndarray] = {}
    for name, array, _ in named:
        if name in inputs:
            raise InvalidArgument(f"input {name!r} is given twice")
        inputs[name] = array
    return inputs, {name for name, _, from_json in named if from_json}


def json_to_array(name: str, value: object) -> np.ndarray:
    """Nested JSON lists -> ndarray (strings become an object array of UTF-8 bytes)."""
    try:
        array = np.array(value)
    except ValueError as exc:  # ragged nesting
        raise InvalidArgument(f"input {name!r}: the nested lists do not form a tensor ({exc})") from None
    if array.dtype.kind == "U":
        return np.array([s.encode("utf-8") for s in array.ravel().tolist()], dtype=object).reshape(array.shape)
    if array.dtype.kind not in "biuf":
        raise InvalidArgument(f"input {name!r}: expected numbers, booleans or strings, got {array.dtype} values")
    return array


def cast_to(name: str, array: np.ndarray, dtype: np.dtype | None) -> np.ndarray:
    """Cast a JSON-born array to the signature's dtype, refusing lossy casts (1.5 -> int, 300 -> int8)."""
    if dtype is None or array.dtype == dtype:
        return array
    got = array.dtype.kind
    lossless = (
        (dtype.kind == "f" and got in "biuf")
        or (dtype.kind in "iu" and got in "iuf" and _fits_integer(array, dtype))
        or (dtype.kind == "b" and got == "b")
    )
    if not lossless:
        shown = "strings" if got == "O" else f"{array.dtype} values"
        raise InvalidArgument(f"input {name!r}: the signature expects {_dtype_name(dtype)} but the JSON has {shown}")
    return array.astype(dtype)


def prediction_json(result: Prediction) -> dict:
    """A Prediction as JSON-ready data: model_spec plus {name: {dtype, shape, value}} per output."""
    return {
        "model_spec": {"name": result.model, "version": result.version, "signature_name": result.signature},
        "outputs": {
            name: {"dtype": _dtype_name(value.dtype), "shape": list(value.shape), "value": _jsonable(value)}
            for name, value in result.outputs.items()
        },
    }


def _jsonable(array: np.ndarray) -> object:
    if array.dtype.kind != "O":
        return array.tolist()
    texts = np.frompyfunc(_text, 1, 1)(array)
    return texts.tolist() if isinstance(texts, np.ndarray) else texts


def _text(value: bytes) -> object:
    """UTF-8 text, or {"b64": ...} for binary strings (TF Serving's REST convention)."""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return {"b64": base64.b64encode(value).decode("ascii")}


def _fits_integer(array: np.ndarray, dtype: np.dtype) -> bool:
    if array.size == 0:
        return True
    if array.dtype.kind == "f" and not (np.isfinite(array).all() and (array == np.round(array)).all()):
        return False
    info = np.iinfo(dtype)
    return bool(info.min <= array.min() and array.max() <= info.max)


def _dtype_name(dtype: np.dtype) -> str:
    return "string" if dtype.kind == "O" else dtype.name


def _connect(args: argparse.Namespace) -> BatchwiseClient | RestClient:
    """A REST client for --rest or an http(s):// target, else a gRPC client."""
    token = args.token
    if args.token_file is not None:
        token = _read_text(args.token_file).strip()
    rest = args.rest or (args.target is not None and is_rest_target(args.target))
    target = args.target or (DEFAULT_REST_TARGET if rest else DEFAULT_TARGET)
    client_type = RestClient if rest else BatchwiseClient
    return client_type(
        target, timeout_s=args.timeout_s, token=token, ca_cert=args.ca_cert,
        client_cert=args.client_cert, client_key=args.client_key, tls_server_name=args.tls_server_name,
    )


def _load_npy(name: str, path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InvalidArgument(f"input {name!r}: cannot read {path} as a .npy array ({exc})") from None


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"cannot read {path} ({exc})") from None


def _parse_json(where: str, text: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"{where}: not valid JSON ({exc})") from None


def _fail(code: str, message: str) -> int:
    print(f"error: {code}: {message}", file=sys.stderr)
    return 1


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value

