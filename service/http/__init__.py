"""The HTTP doors: TensorFlow Serving's REST API and the Open Inference Protocol (v2) REST API, on one port."""
