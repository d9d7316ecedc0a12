"""Private descriptor pool for our generated TF Serving-compatible protos.

NOTE: TensorFlow registers messages with the same full names (tensorflow.TensorProto,
...) in protobuf's default pool. Ours live here so both can be imported in one
process. The well-known types we import (Any, Int64Value) are added first.
"""

from google.protobuf import any_pb2, descriptor_pool, wrappers_pb2

POOL = descriptor_pool.DescriptorPool()
POOL.AddSerializedFile(any_pb2.DESCRIPTOR.serialized_pb)
POOL.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
