"""Load testing and benchmarks: the load generator, payload builders, the benchmark harness and its results."""
