"""The gRPC edge: servicers, the TensorProto codec, status mapping and interceptors."""
