"""Generated TF Serving-compatible protobuf and gRPC modules (see protos/ and `make protos`)."""
