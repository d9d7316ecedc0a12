"""TensorFlow as the reference codec, run in a subprocess (our protos and TF's share message names).

Reads a pickled dict from stdin:
  {"protos": {case: serialized TensorProto}, "fills": {case: (scalar, numpy dtype str, shape)}}
and writes a pickled dict to stdout:
  {"decoded": {case: tf.make_ndarray(proto)},
   "encoded": {case: tf.make_tensor_proto(tf.make_ndarray(proto)) serialized},
   "fill_encoded": {case: tf.make_tensor_proto(scalar, dtype, shape) serialized}}
Trusted test data only (pickle).
"""

from __future__ import annotations

import os
import pickle
import sys


def main() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np
    import tensorflow as tf
    from tensorflow.core.framework import tensor_pb2

    request = pickle.load(sys.stdin.buffer)
    decoded, encoded, fill_encoded = {}, {}, {}
    for case, data in request["protos"].items():
        proto = tensor_pb2.TensorProto.FromString(data)
        decoded[case] = tf.make_ndarray(proto)
        encoded[case] = tf.make_tensor_proto(decoded[case]).SerializeToString()
    for case, (scalar, dtype, shape) in request["fills"].items():
        proto = tf.make_tensor_proto(scalar, dtype=tf.as_dtype(np.dtype(dtype)), shape=shape)
        fill_encoded[case] = proto.SerializeToString()
    pickle.dump({"decoded": decoded, "encoded": encoded, "fill_encoded": fill_encoded}, sys.stdout.buffer)


if __name__ == "__main__":
    main()
