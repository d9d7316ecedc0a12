"""Property-based fuzzing of Predict, GetModelMetadata, GetModelStatus and the v2 door over real gRPC.

Invariants, for every request hypothesis draws (valid, mutated, hostile, unknown fields, corrupt bytes):
  - the reply is OK or a client-error status from README's table: never INTERNAL or UNKNOWN,
    never a dropped connection, and its details fit in a trailer (<= MAX_DETAILS_CHARS);
  - requests built to be valid get OK;
  - a valid request right after still succeeds with the right numbers;
  - the server's resident memory stays bounded (peak and end, against a baseline after warm-up).
See tests/fuzz/conftest.py for the long run and the subprocess target.
"""

from __future__ import annotations

import os

import grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.api import predict_pb2
from service.rpc.status import MAX_DETAILS_CHARS
from tests.support import fuzz, fuzz_v2
from tests.support.memory import MIB

PREDICT = "/tensorflow.serving.PredictionService/Predict"
METADATA = "/tensorflow.serving.PredictionService/GetModelMetadata"
STATUS = "/tensorflow.serving.ModelService/GetModelStatus"
V2 = "/inference.GRPCInferenceService/"
OK = grpc.StatusCode.OK
CLIENT_ERRORS = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.FAILED_PRECONDITION,
}
LONG_RUN = "BATCHWISE_FUZZ_EXAMPLES" in os.environ
FUZZ = settings(
    max_examples=int(os.environ.get("BATCHWISE_FUZZ_EXAMPLES", "100")),
    deadline=None,
    derandomize=not LONG_RUN,  # `make test` replays the same examples; the long run explores
    suppress_health_check=list(HealthCheck),
    database=None,
)
# Growth over the baseline taken after warm-up. The largest requests here are a few MB and a
# typical short run grows the peak by ~20 MiB; the in-process target also counts the client and
# hypothesis, hence the slack. (Before the fixes, one 30-byte fill request grew it by 128 MiB and a
# 1 MB string filled into 65536 rows would have asked the model for 64 GiB.)
PEAK_GROWTH_BUDGET_BYTES = 256 * MIB
END_GROWTH_BUDGET_BYTES = 128 * MIB
ASCII_HEADER = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=8)
VARIANTS = st.one_of(st.none(), st.sampled_from(["", "savedmodel", "float32", "int8", "x" * 4000]), ASCII_HEADER)


def send(target, method: str, payload: bytes, metadata=()) -> tuple[grpc.StatusCode, str]:
    try:
        target.raw(method)(payload, timeout=60, metadata=metadata)
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or ""
    return OK, ""


def check(target, method: str, payload: bytes, valid: bool, metadata=()) -> None:
    code, details = send(target, method, payload, metadata)
    assert code == OK or code in CLIENT_ERRORS, f"{method}: {code.name}: {details[:500]}"
    assert len(details) <= MAX_DETAILS_CHARS, f"{method}: {len(details)}-character details"
    if valid:
        assert code == OK, f"{method}: a valid request got {code.name}: {details[:500]}"
    target.assert_alive()


def run_with_memory_bound(target, run) -> None:
    """Run the hypothesis test `run`; check the server's peak RSS and its anonymous RSS at the end
    (what a leak grows) against baselines taken after warm-up."""
    target.assert_alive()
    baseline, anon_baseline = target.rss_bytes(), target.anon_rss_bytes()
    peak_known = target.reset_peak()
    run()
    end_growth = target.anon_rss_bytes() - anon_baseline
    peak_growth = target.peak_rss_bytes() - baseline if peak_known else end_growth
    print(f"\nserver RSS: baseline {baseline / MIB:.0f} MiB, peak +{peak_growth / MIB:.0f} MiB; "
          f"anonymous RSS at the end +{end_growth / MIB:.0f} MiB")
    assert peak_growth < PEAK_GROWTH_BUDGET_BYTES
    assert end_growth < END_GROWTH_BUDGET_BYTES


def test_predict_survives_hostile_requests(fuzz_target):
    @FUZZ
    @given(st.one_of(fuzz.valid_predicts(), fuzz.hostile_predicts()), VARIANTS)
    def run(case, variant):
        request, valid = case
        metadata = [("x-batchwise-variant", variant)] if variant is not None else []
        valid = valid and variant in (None, "", "savedmodel")
        check(fuzz_target, PREDICT, request.SerializeToString(), valid, metadata)

    run_with_memory_bound(fuzz_target, run)


def test_metadata_and_status_survive_hostile_requests(fuzz_target):
    @FUZZ
    @given(st.one_of(fuzz.metadata_requests().map(lambda c: (METADATA, *c)),
                     fuzz.status_requests().map(lambda c: (STATUS, *c))))
    def run(case):
        method, request, valid = case
        check(fuzz_target, method, request.SerializeToString(), valid)

    run_with_memory_bound(fuzz_target, run)


@st.composite
def with_unknown_fields(draw):
    """A valid Predict with well-formed unknown fields in the request, its model spec and its tensor."""
    request, _ = draw(fuzz.valid_predicts())
    where = draw(st.sets(st.sampled_from(["request", "spec", "tensor"]), min_size=1))
    extra = draw(st.lists(fuzz.unknown_fields(), min_size=1, max_size=3))
    if "spec" in where:
        spec_bytes = request.model_spec.SerializeToString() + b"".join(extra)
        request.model_spec.ParseFromString(spec_bytes)  # protobuf keeps unknown fields and re-serializes them
    if "tensor" in where:
        (name, tensor), = request.inputs.items()
        request.inputs[name].ParseFromString(tensor.SerializeToString() + b"".join(extra))
    payload = request.SerializeToString()
    return payload + b"".join(extra) if "request" in where else payload


def test_unknown_fields_are_ignored(fuzz_target):
    @FUZZ
    @given(with_unknown_fields())
    def run(payload):
        check(fuzz_target, PREDICT, payload, valid=True)

    run_with_memory_bound(fuzz_target, run)


@st.composite
def corrupt_messages(draw):
    method = draw(st.sampled_from([PREDICT, METADATA, STATUS]))
    if method == PREDICT:
        request, _ = draw(fuzz.valid_predicts())
    elif method == METADATA:
        request, _ = draw(fuzz.metadata_requests())
    else:
        request, _ = draw(fuzz.status_requests())
    return method, draw(fuzz.corrupt_bytes(request.SerializeToString()))


def test_corrupt_messages_get_client_errors(fuzz_target):
    @FUZZ
    @given(corrupt_messages())
    def run(case):
        method, payload = case
        check(fuzz_target, method, payload, valid=False)

    run_with_memory_bound(fuzz_target, run)


def test_regression_unparseable_message_is_invalid_argument_not_unknown(fuzz_target):
    """grpc.aio answered UNKNOWN ("Unexpected DecodeError") and logged a traceback per call."""
    valid = predict_pb2.PredictRequest(model_spec=fuzz.model_spec("affine")).SerializeToString()
    for payload in (b"\xff\xff\xff\xff", valid + b"\x0a\x03\x0a\x01\xff"):  # corrupt; model name not UTF-8
        code, details = send(fuzz_target, PREDICT, payload)
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert "does not parse" in details
    fuzz_target.assert_alive()


def test_v2_infer_survives_hostile_requests(fuzz_target):
    @FUZZ
    @given(st.one_of(fuzz_v2.valid_infers(), fuzz_v2.mutated_infers(), fuzz_v2.hostile_infers()), VARIANTS)
    def run(case, variant):
        request, valid = case
        metadata = [("x-batchwise-variant", variant)] if variant is not None else []
        valid = valid and variant in (None, "", "savedmodel")
        check(fuzz_target, V2 + "ModelInfer", request.SerializeToString(), valid, metadata)

    run_with_memory_bound(fuzz_target, run)


def test_v2_metadata_and_readiness_survive_hostile_requests(fuzz_target):
    @FUZZ
    @given(fuzz_v2.metadata_and_ready_requests())
    def run(case):
        method, request, valid = case
        check(fuzz_target, V2 + method, request.SerializeToString(), valid)

    run_with_memory_bound(fuzz_target, run)


@st.composite
def corrupt_v2_messages(draw):
    request, _ = draw(fuzz_v2.valid_infers())
    return draw(fuzz.corrupt_bytes(request.SerializeToString()))


def test_corrupt_v2_messages_get_client_errors(fuzz_target):
    @FUZZ
    @given(corrupt_v2_messages())
    def run(payload):
        check(fuzz_target, V2 + "ModelInfer", payload, valid=False)

    run_with_memory_bound(fuzz_target, run)
