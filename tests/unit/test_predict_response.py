"""predict_response: the cached-skeleton encoding equals encoding every output in full, strings included."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from service.api import predict_pb2
from service.cache import BoundedCache
from service.dataplane import PredictResult
from service.rpc.codec import fill_tensor_proto
from service.rpc.prediction_servicer import fill_model_spec, predict_response


def _in_full(result: PredictResult) -> predict_pb2.PredictResponse:
    response = predict_pb2.PredictResponse()
    fill_model_spec(response.model_spec, result.servable, result.signature)
    for name, value in result.outputs.items():
        fill_tensor_proto(response.outputs[name], value)
    return response


def test_numeric_and_string_outputs_match_the_full_encoding_on_every_call():
    servable = SimpleNamespace(model="m", version=3)
    skeletons = BoundedCache(4)
    # Repeats hit the cached skeleton (with new values each call, so stale ones would show); a new row
    # count builds another.
    for call, rows in enumerate((1, 1, 4, 1)):
        outputs = {
            "scores": np.arange(rows * 3, dtype=np.float32).reshape(rows, 3) + call,
            "flags": (np.arange(rows) + call) % 2 == 0,
            "labels": np.array([f"r{i}-{call}".encode() for i in range(rows)], dtype=object),
        }
        result = PredictResult(servable, "serving_default", outputs)
        assert predict_response(result, skeletons) == _in_full(result) == predict_response(result)
    assert (skeletons.misses, skeletons.hits, len(skeletons)) == (2, 2, 2)
