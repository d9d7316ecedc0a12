# Batchwise server for GPU nodes: SavedModels on TensorFlow 2.21 with CUDA, dynamic batching.
# Build from the repository root (the legacy builder works too: no BuildKit-only feature is used):
#   docker build -f deploy/docker/gpu.Dockerfile -t batchwise/server-gpu:0.1.0 .
# TensorFlow and CUDA come from PyPI, pinned in deploy/docker/requirements/gpu.txt and gpu-cuda.txt
# (`tensorflow[and-cuda]`): TensorFlow finds the NVIDIA wheels' libraries through its RUNPATH, so the
# base is plain Python and the node needs only the NVIDIA driver (and container toolkit).
# Build arguments:
#   PYTHON_IMAGE  the base: any Debian-based CPython 3.11 image with `python -m venv`
#   CUDA_WHEELS   true (default): install the CUDA wheels (several GB); false: the same TensorFlow
#                 without them, which serves on CPU only (CI's smoke build)
# One stage: nothing is compiled, and copying a multi-GB virtualenv between stages costs minutes.
# Without a visible GPU the image serves on CPU. Models are NOT baked in: mount them at /models.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="batchwise-server-gpu" \
      org.opencontainers.image.description="Batchwise gRPC inference server, TensorFlow GPU variant" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TF_CPP_MIN_LOG_LEVEL=1 \
    BATCHWISE_SERVER__HOST=0.0.0.0 \
    BATCHWISE_SERVER__PORT=8500 \
    BATCHWISE_METRICS__HOST=0.0.0.0 \
    BATCHWISE_METRICS__PORT=8502 \
    BATCHWISE_HTTP__HOST=0.0.0.0 \
    BATCHWISE_HTTP__PORT=8501 \
    BATCHWISE_REPOSITORY__PATH=/models \
    BATCHWISE_RUNTIME__VARIANT=savedmodel
RUN groupadd --system --gid 10001 batchwise \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin batchwise \
    && mkdir /models \
    && chown 10001:10001 /models
# Declared here, not after FROM: instructions shared by images built at once race in the legacy
# builder's cache, so each image's first instruction after FROM is its own LABEL.
ARG CUDA_WHEELS=true
COPY deploy/docker/requirements/gpu.txt deploy/docker/requirements/gpu-cuda.txt /tmp/requirements/
RUN python -m venv /opt/venv \
    && case "$CUDA_WHEELS" in \
      true) pip install --no-cache-dir -r /tmp/requirements/gpu.txt -r /tmp/requirements/gpu-cuda.txt ;; \
      false) pip install --no-cache-dir -r /tmp/requirements/gpu.txt ;; \
      *) echo "CUDA_WHEELS must be true or false, not '$CUDA_WHEELS'" >&2; exit 1 ;; \
    esac \
    && rm -rf /tmp/requirements
COPY pyproject.toml /tmp/src/
COPY service/ /tmp/src/service/
COPY contract/ /tmp/src/contract/
# --no-deps: every dependency came from the locks above; `pip check` proves the set is consistent.
RUN pip install --no-cache-dir --no-deps /tmp/src \
    && pip check \
    && python -c "import tensorflow as tf; assert tf.__version__.startswith('2.21.'), tf.__version__" \
    && rm -rf /tmp/src
USER 10001:10001
WORKDIR /tmp
VOLUME ["/models"]
# gRPC, HTTP (REST) and Prometheus metrics.
EXPOSE 8500 8501 8502
# SavedModel load and GPU warm-up (kernel autotuning) can take a while before SERVING.
# Without --target the probe asks 127.0.0.1 on the configured gRPC port (see cpu.Dockerfile).
HEALTHCHECK --interval=15s --timeout=5s --start-period=180s --retries=3 \
    CMD ["python", "-m", "service.healthcheck", "--timeout-s", "4"]
ENTRYPOINT ["python", "-m", "service"]
CMD []
