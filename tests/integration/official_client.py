"""Run as a separate process: talk to our server exactly as a TF Serving user would.

Uses TensorFlow's own `tensorflow_serving.apis` stubs and `tf.make_tensor_proto`. Prints JSON with
the served outputs, the SavedModel's own outputs on the same inputs, and the parsed metadata.
A separate process is needed because these protos and ours register the same message names.

Usage: python official_client.py TARGET MODEL SAVED_MODEL_DIR
"""

import json
import sys

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2, prediction_service_pb2_grpc


def main(target: str, model: str, saved_model_dir: str) -> None:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(target))
    features = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = "serving_default"
    request.inputs["features"].CopyFrom(tf.make_tensor_proto(features))
    response = stub.Predict(request, timeout=30)
    served = tf.make_ndarray(response.outputs["probabilities"])

    local = tf.saved_model.load(saved_model_dir).signatures["serving_default"]
    expected = local(features=tf.constant(features))["probabilities"].numpy()

    meta_request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    meta_request.model_spec.name = model
    meta = stub.GetModelMetadata(meta_request, timeout=30)
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    meta.metadata["signature_def"].Unpack(signature_map)
    serving = signature_map.signature_def["serving_default"]

    print(json.dumps({
        "served": served.tolist(),
        "expected": expected.tolist(),
        "version": response.model_spec.version.value,
        "inputs": {k: [d.size for d in v.tensor_shape.dim] for k, v in serving.inputs.items()},
        "outputs": sorted(serving.outputs),
        "input_dtype": tf.dtypes.as_dtype(serving.inputs["features"].dtype).name,
    }))


if __name__ == "__main__":
    main(*sys.argv[1:4])
