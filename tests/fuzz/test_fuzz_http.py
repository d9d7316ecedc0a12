"""Property-based fuzzing of the REST doors (TF Serving REST predict, v2 REST infer) over real HTTP.

Invariants, for every body hypothesis draws (valid, mutated, hostile, corrupt):
  - the reply is 200 or a client error (400, 404, 413), never 500 or a dropped connection, and
    every error is a JSON object {"error": "<message>"};
  - bodies built to be valid get 200;
  - a valid request right after still succeeds with the right numbers.
Runs against the same target as the gRPC fuzzing (tests/fuzz/conftest.py), with its memory bound.
"""

from __future__ import annotations

import numpy as np
import requests
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.test_fuzz_rpc import FUZZ, run_with_memory_bound
from tests.support import http_fuzz

CLIENT_ERRORS = {400, 404, 413}
SESSION = requests.Session()


def check(target, path: str, body: bytes, headers: dict, valid: bool) -> None:
    reply = SESSION.post(target.http_url + path, data=body, headers=headers, timeout=60)
    assert reply.status_code == 200 or reply.status_code in CLIENT_ERRORS, (reply.status_code, reply.text[:500])
    if reply.status_code != 200:
        error = reply.json()["error"]
        assert isinstance(error, str) and error
    if valid:
        assert reply.status_code == 200, f"a valid request got {reply.status_code}: {reply.text[:500]}"
    _assert_alive(target)


def _assert_alive(target) -> None:
    x = [[1.0, 2.0, 3.0]]
    reply = SESSION.post(target.http_url + "/v1/models/affine:predict", json={"inputs": {"x": x}}, timeout=30)
    np.testing.assert_allclose(reply.json()["outputs"]["y"], np.array(x) * 3 + 1)


def test_tfserving_rest_survives_hostile_bodies(fuzz_target):
    @FUZZ
    @given(st.one_of(http_fuzz.valid_tf_requests(), http_fuzz.hostile_tf_requests()))
    def run(case):
        check(fuzz_target, *case)

    run_with_memory_bound(fuzz_target, run)


def test_v2_rest_survives_hostile_bodies(fuzz_target):
    @FUZZ
    @given(st.one_of(http_fuzz.valid_v2_requests(), http_fuzz.hostile_v2_requests()))
    def run(case):
        check(fuzz_target, *case)

    run_with_memory_bound(fuzz_target, run)


def test_corrupt_bodies_get_client_errors(fuzz_target):
    @FUZZ
    @given(http_fuzz.corrupt_bodies())
    def run(case):
        path, body, headers, _ = case
        check(fuzz_target, path, body, headers, valid=False)

    run_with_memory_bound(fuzz_target, run)
