"""Check MLServer's v2 ModelInfer answer against TensorFlow (runs in MLServer's venv: uses its own generated types).

Usage: check_infer.py TARGET MODEL SAVED_MODEL_DIR. Sends the same 3-row float32 batch twice, once in the typed
`contents.fp32_contents` field and once as `raw_input_contents`, and compares every output with the SavedModel's
serving signature called in-process. Exits 0 when both agree within 1e-4, 1 otherwise.
"""

from __future__ import annotations

import sys

import grpc
import numpy as np
import tensorflow as tf
from mlserver.grpc import dataplane_pb2 as pb
from mlserver.grpc import dataplane_pb2_grpc as pb_grpc

ROWS = 3
ATOL = 1e-4


def build_request(model: str, name: str, batch: np.ndarray, raw: bool) -> pb.ModelInferRequest:
    tensor = pb.ModelInferRequest.InferInputTensor(name=name, datatype="FP32", shape=list(batch.shape))
    request = pb.ModelInferRequest(model_name=model, inputs=[tensor])
    if raw:
        request.raw_input_contents.append(batch.astype("<f4").tobytes())
    else:
        request.inputs[0].contents.fp32_contents.extend(batch.ravel().tolist())
    return request


def decode_outputs(response: pb.ModelInferResponse) -> dict[str, np.ndarray]:
    outputs = {}
    for index, output in enumerate(response.outputs):
        if response.raw_output_contents:
            values = np.frombuffer(response.raw_output_contents[index], "<f4")
        else:
            values = np.asarray(output.contents.fp32_contents, np.float32)
        outputs[output.name] = values.reshape(list(output.shape))
    return outputs


def main(target: str, model: str, saved_model_dir: str) -> int:
    signature = tf.saved_model.load(saved_model_dir).signatures["serving_default"]
    _, specs = signature.structured_input_signature
    (name, spec), = specs.items()
    shape = [ROWS, *[1 if d is None else d for d in spec.shape[1:]]]
    batch = np.random.default_rng(0).uniform(0, 1, shape).astype(np.float32)
    expected = {k: v.numpy() for k, v in signature(**{name: tf.constant(batch)}).items()}
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        failures = 0
        for raw in (False, True):
            got = decode_outputs(stub.ModelInfer(build_request(model, name, batch, raw), timeout=30))
            ok = got.keys() == expected.keys() and all(np.allclose(got[k], expected[k], atol=ATOL) for k in got)
            print(f"{'raw_input_contents' if raw else 'fp32_contents'}: {'OK' if ok else 'MISMATCH'} "
                  f"outputs={ {k: v.shape for k, v in got.items()} }")
            failures += not ok
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
