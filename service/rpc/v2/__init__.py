"""The Open Inference Protocol (KServe v2) door over gRPC: inference.GRPCInferenceService."""
