# syntax=docker/dockerfile:1
# Batchwise server for GPU nodes: SavedModels on TensorFlow 2.21 with CUDA, dynamic batching.
# Build from the repository root:
#   docker build -f deploy/docker/gpu.Dockerfile -t batchwise/server-gpu:0.1.0 .
# Models are NOT baked in: mount a model repository at /models (see deploy/README.md).
# The base image's TensorFlow must match pyproject's tensorflow==2.21.* (the lock pins 2.21.0).

# ---- build stage: our wheel only (the runtime stage needs no sources or build backend) ----
FROM python:3.11-slim-bookworm AS wheel
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml ./
COPY service/ service/
COPY contract/ contract/
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# ---- runtime stage: the official TensorFlow GPU image (Python 3.11, CUDA, cuDNN) ----
FROM tensorflow/tensorflow:2.21.0-gpu
LABEL org.opencontainers.image.title="batchwise-server-gpu" \
      org.opencontainers.image.description="Batchwise gRPC inference server, TensorFlow GPU variant" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TF_CPP_MIN_LOG_LEVEL=1 \
    BATCHWISE_SERVER__HOST=0.0.0.0 \
    BATCHWISE_SERVER__PORT=8500 \
    BATCHWISE_HTTP__HOST=0.0.0.0 \
    BATCHWISE_HTTP__PORT=8501 \
    BATCHWISE_METRICS__HOST=0.0.0.0 \
    BATCHWISE_METRICS__PORT=8502 \
    BATCHWISE_REPOSITORY__PATH=/models \
    BATCHWISE_RUNTIME__VARIANT=savedmodel
COPY deploy/docker/requirements/gpu.txt /tmp/requirements.txt
COPY --from=wheel /wheels/ /tmp/wheels/
# Fail the build early if the base image's Python or TensorFlow drifted from what we pinned.
RUN python -c "import sys; assert sys.version_info[:2] == (3, 11), sys.version" \
    && python -m pip install --no-cache-dir --requirement /tmp/requirements.txt \
    && python -m pip install --no-cache-dir --no-deps /tmp/wheels/*.whl \
    && python -m pip check \
    && python -c "import tensorflow as tf; assert tf.__version__.startswith('2.21.'), tf.__version__" \
    && rm -rf /tmp/wheels /tmp/requirements.txt
RUN groupadd --system --gid 10001 batchwise \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin batchwise \
    && mkdir /models \
    && chown 10001:10001 /models
USER 10001:10001
WORKDIR /tmp
VOLUME ["/models"]
EXPOSE 8500 8501 8502
# SavedModel load and GPU warm-up (kernel autotuning) can take a while before SERVING.
HEALTHCHECK --interval=15s --timeout=5s --start-period=180s --retries=3 \
    CMD ["python", "-m", "service.healthcheck", "--target", "127.0.0.1:8500", "--timeout-s", "4"]
ENTRYPOINT ["python", "-m", "service"]
CMD []
