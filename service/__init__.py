"""Batchwise: a TF Serving-compatible gRPC inference server with dynamic batching."""
