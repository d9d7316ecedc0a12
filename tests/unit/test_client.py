"""service.client: CLI parsing, JSON/.npy inputs, calls over real gRPC to an echo server, and no TensorFlow."""

from __future__ import annotations

import json
import subprocess
import sys

import grpc
import numpy as np
import pytest

from service.api import types_pb2
from service.client import BatchwiseClient, ClientError, main
from service.client_cli import build_parser, cast_to, load_inputs
from service.errors import InvalidArgument
from tests.support import blocked_tf_env
from tests.support.certs import make_pki
from tests.support.echo_server import ECHO_VERSION, MISSING_MODEL, EchoServicer, start_echo_server
from tests.support.tensors import DTYPES, assert_same, sample_array


@pytest.fixture(scope="module")
def echo():
    servicer = EchoServicer(signature_inputs={"x": types_pb2.DT_FLOAT, "n": types_pb2.DT_INT8})
    server, target = start_echo_server(servicer)
    yield servicer, target
    server.stop(0)


def run_cli(capsys, *argv: str) -> tuple[int, dict | None, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, json.loads(captured.out) if captured.out else None, captured.err


# --- argument parsing and inputs ------------------------------------------------------------------


def test_predict_arguments_parse():
    args = build_parser().parse_args([
        "predict", "--model", "digits", "--label", "canary", "--input", "a=[1]", "--input", "b=x.npy",
        "--output-filter", "p", "--output-filter", "q", "--token", "t", "--variant", "int8", "--timeout-s", "2.5",
    ])
    assert (args.command, args.model, args.label, args.version) == ("predict", "digits", "canary", None)
    assert args.input == ["a=[1]", "b=x.npy"] and args.output_filter == ["p", "q"]
    assert (args.token, args.variant, args.timeout_s, args.target) == ("t", "int8", 2.5, None)  # None: per protocol
    assert not args.rest


@pytest.mark.parametrize("argv", [
    ["predict", "--model", "m", "--version", "1", "--label", "x"],  # exclusive
    ["predict", "--model", "m", "--version", "0"],  # versions are positive
    ["status", "--model", "m", "--label", "x"],  # GetModelStatus takes no label
    ["metadata"],  # --model is required
    ["predict", "--model", "m", "--timeout-s", "0"],
])
def test_bad_arguments_exit_with_usage(argv, capsys):
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(argv)
    assert exited.value.code == 2


def test_inputs_from_json_flags_npy_files_and_a_json_file(tmp_path):
    np.save(tmp_path / "img.npy", np.arange(6, dtype=np.uint8).reshape(2, 3))
    (tmp_path / "more.json").write_text(json.dumps({"flags": [True, False], "words": [["a", "\u00e9"]]}))
    inputs, from_json = load_inputs(["x=[[1, 2.5]]", f"img={tmp_path / 'img.npy'}", "n=[3]"], tmp_path / "more.json")
    assert from_json == {"x", "n", "flags", "words"}
    assert_same(inputs["img"], np.arange(6, dtype=np.uint8).reshape(2, 3))
    assert_same(inputs["x"], np.array([[1, 2.5]]))
    assert_same(inputs["flags"], np.array([True, False]))
    assert_same(inputs["words"], np.array([[b"a", "\u00e9".encode()]], dtype=object))


@pytest.mark.parametrize(("flags", "message"), [
    (["x"], "expected NAME=JSON or NAME=FILE.npy"),
    (["x=[1,"], "--input x: not valid JSON"),
    (["x=[[1, 2], [3]]"], "input 'x': the nested lists do not form a tensor"),
    (["x=[{}]"], "input 'x': expected numbers, booleans or strings"),
    (["x=[1]", "x=[2]"], "input 'x' is given twice"),
    (["x=/nonexistent/a.npy"], "input 'x': cannot read /nonexistent/a.npy"),
])
def test_bad_inputs_are_refused(flags, message):
    with pytest.raises(InvalidArgument, match=message):
        load_inputs(flags, None)


def test_pickled_npy_and_non_object_json_files_are_refused(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([b"a"], dtype=object), allow_pickle=True)
    with pytest.raises(InvalidArgument, match="cannot read"):
        load_inputs([f"o={tmp_path / 'obj.npy'}"], None)
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(InvalidArgument, match="expected an object"):
        load_inputs([], tmp_path / "list.json")


@pytest.mark.parametrize(("value", "dtype", "expected"), [
    ([0.1, 2], "float32", np.array([0.1, 2], np.float32)),
    ([1, -128], "int8", np.array([1, -128], np.int8)),
    ([2.0, 3.0], "int32", np.array([2, 3], np.int32)),
    ([True], "bool", np.array([True])),
    ([1.5], "int32", "expects int32 but the JSON has float64 values"),
    ([300], "int8", "expects int8 but the JSON has int64 values"),
    ([-1], "uint8", "expects uint8"),
    (["a"], "float32", "expects float32 but the JSON has strings"),
    ([1], "object", "expects string but the JSON has int64 values"),
    ([1], "bool", "expects bool"),
])
def test_json_inputs_are_cast_to_the_signature_dtype_without_loss(value, dtype, expected):
    array = load_inputs([f"v={json.dumps(value)}"], None)[0]["v"]
    if isinstance(expected, str):
        with pytest.raises(InvalidArgument, match=f"input 'v': the signature {expected}"):
            cast_to("v", array, np.dtype(dtype))
    else:
        assert_same(cast_to("v", array, np.dtype(dtype)), expected)


# --- the API and the CLI against a real gRPC peer -------------------------------------------------


def test_predict_round_trips_every_dtype(echo):
    _, target = echo
    inputs = {f"in_{dtype.name}": sample_array(dtype, (2, 3), seed=3) for dtype in DTYPES}
    inputs["scalar"] = np.array(1.5, np.float32)
    with BatchwiseClient(target) as client:
        version, outputs = client.predict("m", inputs)
    assert version == ECHO_VERSION and outputs.keys() == inputs.keys()
    for name, value in inputs.items():
        assert_same(outputs[name], value)


def test_predict_sends_model_spec_filter_token_and_variant(echo):
    servicer, target = echo
    with BatchwiseClient(target, token="s3cret") as client:
        result = client.predict_detailed(
            "m", {"a": np.ones(2), "b": np.zeros(1)}, version=3, signature="sig", output_filter=["b"], variant="int8"
        )
    assert (result.model, result.version, result.signature, list(result.outputs)) == ("m", 3, "sig", ["b"])
    method, metadata = servicer.calls[-1]
    assert method == "Predict"
    assert metadata["authorization"] == "Bearer s3cret" and metadata["x-batchwise-variant"] == "int8"


def test_failures_raise_client_error_with_the_grpc_code(echo):
    _, target = echo
    with BatchwiseClient(target) as client, pytest.raises(ClientError) as caught:
        client.predict(MISSING_MODEL, {"x": np.ones(1)})
    assert (caught.value.code, caught.value.message) == ("NOT_FOUND", "model 'missing' is not served")
    with BatchwiseClient(target) as client, pytest.raises(InvalidArgument, match="input 'c': numpy dtype complex"):
        client.predict("m", {"c": np.ones(1, np.complex64)})


def test_cli_predict_prints_json_and_casts_json_inputs(echo, capsys, tmp_path):
    _, target = echo
    np.save(tmp_path / "n.npy", np.array([1, 2], np.int64))
    code, out, err = run_cli(
        capsys, "predict", "--target", target, "--model", "m", "--input", "x=[[1, 2]]",
        "--input", f"n={tmp_path / 'n.npy'}",  # .npy inputs keep their dtype even when the signature differs
        "--input", 'text=["ok", "\\u00e9"]',
    )
    assert (code, err) == (0, "")
    assert out["model_spec"] == {"name": "m", "version": ECHO_VERSION, "signature_name": ""}
    assert out["outputs"]["x"] == {"dtype": "float32", "shape": [1, 2], "value": [[1.0, 2.0]]}
    assert out["outputs"]["n"] == {"dtype": "int64", "shape": [2], "value": [1, 2]}
    assert out["outputs"]["text"] == {"dtype": "string", "shape": [2], "value": ["ok", "\u00e9"]}


def test_cli_shows_binary_strings_as_base64(echo, capsys, tmp_path):
    _, target = echo
    np.save(tmp_path / "raw.npy", np.array([b"\xff\x00"]))
    code, out, _ = run_cli(capsys, "predict", "--target", target, "--model", "m", "--input", f"r={tmp_path}/raw.npy")
    assert code == 0 and out["outputs"]["r"]["value"] == [{"b64": "/w=="}]


@pytest.mark.parametrize(("argv", "expected_err"), [
    (["predict", "--model", MISSING_MODEL, "--input", "y=[1]"], "error: NOT_FOUND: model 'missing' is not served"),
    (["predict", "--model", "m", "--input", "n=[1000]"], "error: INVALID_ARGUMENT: input 'n': the signature expects"),
    (["predict", "--model", "m", "--input", "x"], "error: INVALID_ARGUMENT: --input 'x': expected NAME=JSON"),
    (["status", "--model", "m", "--token-file", "/nonexistent"], "error: INVALID_ARGUMENT: cannot read /nonexistent"),
])
def test_cli_errors_go_to_stderr_with_exit_status_1(echo, capsys, argv, expected_err):
    _, target = echo
    code, out, err = run_cli(capsys, *argv, "--target", target)
    assert (code, out) == (1, None)
    assert err.startswith(expected_err) and err.count("\n") == 1


def test_cli_reports_an_unreachable_server(capsys):
    code, _, err = run_cli(capsys, "status", "--model", "m", "--target", "127.0.0.1:1", "--timeout-s", "2")
    assert code == 1 and err.split(":")[0:2] in (["error", " UNAVAILABLE"], ["error", " DEADLINE_EXCEEDED"])


def test_cli_metadata_and_status(echo, capsys):
    _, target = echo
    code, out, _ = run_cli(capsys, "metadata", "--target", target, "--model", "m", "--label", "stable")
    assert code == 0 and out["model_spec"] == {"name": "m", "version": ECHO_VERSION}
    inputs = out["signature_def"]["serving_default"]["inputs"]
    assert inputs["x"] == {"name": "x:0", "dtype": "DT_FLOAT", "tensor_shape": {"dim": [{"size": "-1"}]}}
    code, out, _ = run_cli(capsys, "status", "--target", target, "--model", "m")
    assert code == 0 and out["model"] == "m"
    failed = {"error_code": "INTERNAL", "error_message": "load failed"}
    assert out["model_version_status"][1] == {"version": ECHO_VERSION + 1, "state": "END", "status": failed}


def test_mutual_tls(tmp_path):
    pki = make_pki(tmp_path)
    credentials = grpc.ssl_server_credentials(
        [(pki["server"].key.read_bytes(), pki["server"].cert.read_bytes())],
        root_certificates=pki["ca"].cert.read_bytes(), require_client_auth=True,
    )
    server, target = start_echo_server(EchoServicer(), credentials)
    try:
        with BatchwiseClient(target, ca_cert=pki["ca"].cert, client_cert=pki["client"].cert,
                             client_key=pki["client"].key, timeout_s=5) as client:
            assert client.predict("m", {"x": np.ones(1)})[0] == ECHO_VERSION
        for who in ("stranger", None):
            pair = pki[who] if who else None
            with BatchwiseClient(target, ca_cert=pki["ca"].cert, client_cert=pair and pair.cert,
                                 client_key=pair and pair.key, timeout_s=5) as client, pytest.raises(ClientError):
                client.predict("m", {"x": np.ones(1)})
    finally:
        server.stop(0)


# --- no TensorFlow --------------------------------------------------------------------------------


def run_blocked(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *argv], env=blocked_tf_env(), capture_output=True, text=True, timeout=120, check=False
    )


def test_the_blocker_really_blocks_tensorflow():
    done = run_blocked("-c", "import tensorflow")
    assert done.returncode != 0 and "blocked by BATCHWISE_BLOCK_TENSORFLOW=1" in done.stderr


def test_client_imports_and_helps_without_tensorflow():
    check = (
        "import sys, service.client, service.client_cli\n"
        "assert not any(m.startswith(('tensorflow', 'keras')) for m in sys.modules), sorted(sys.modules)"
    )
    done = run_blocked("-c", check)
    assert done.returncode == 0, done.stderr
    done = run_blocked("-m", "service.client", "--help")
    assert done.returncode == 0 and "predict" in done.stdout, done.stderr


def test_cli_predicts_without_tensorflow(echo):
    _, target = echo
    done = run_blocked("-m", "service.client", "predict", "--target", target, "--model", "m", "--input", "x=[1]")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["outputs"]["x"] == {"dtype": "float32", "shape": [1], "value": [1.0]}
