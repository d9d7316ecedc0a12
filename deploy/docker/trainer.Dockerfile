# Batchwise offline trainer: builds tf.keras models and publishes them into the model repository.
# Build from the repository root (the legacy builder works too: no BuildKit-only feature is used):
#   docker build -f deploy/docker/trainer.Dockerfile -t batchwise/trainer:0.1.0 .
# TensorFlow and CUDA come from PyPI, pinned in deploy/docker/requirements/trainer.txt and
# trainer-cuda.txt; build arguments PYTHON_IMAGE and CUDA_WHEELS as in gpu.Dockerfile (one stage
# for the same reason).
# Runs on GPU or CPU nodes (TensorFlow falls back to the CPU when no GPU is visible).
# Datasets are the ones scikit-learn bundles; nothing is downloaded at run time.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="batchwise-trainer" \
      org.opencontainers.image.description="Batchwise offline trainer (tf.distribute, multi-worker)" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TF_CPP_MIN_LOG_LEVEL=1
RUN groupadd --system --gid 10001 batchwise \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin batchwise \
    && mkdir /models \
    && chown 10001:10001 /models
# Declared here, not after FROM: instructions shared by images built at once race in the legacy
# builder's cache, so each image's first instruction after FROM is its own LABEL.
ARG CUDA_WHEELS=true
COPY deploy/docker/requirements/trainer.txt deploy/docker/requirements/trainer-cuda.txt /tmp/requirements/
RUN python -m venv /opt/venv \
    && case "$CUDA_WHEELS" in \
      true) pip install --no-cache-dir -r /tmp/requirements/trainer.txt -r /tmp/requirements/trainer-cuda.txt ;; \
      false) pip install --no-cache-dir -r /tmp/requirements/trainer.txt ;; \
      *) echo "CUDA_WHEELS must be true or false, not '$CUDA_WHEELS'" >&2; exit 1 ;; \
    esac \
    && rm -rf /tmp/requirements
COPY pyproject.toml /tmp/src/
COPY models/ /tmp/src/models/
COPY contract/ /tmp/src/contract/
RUN pip install --no-cache-dir --no-deps /tmp/src \
    && pip check \
    && python -c "import tensorflow as tf; assert tf.__version__.startswith('2.21.'), tf.__version__" \
    && rm -rf /tmp/src
USER 10001:10001
WORKDIR /tmp
VOLUME ["/models"]
# tf.distribute MultiWorkerMirroredStrategy: the port each worker lists in TF_CONFIG.
EXPOSE 2222
# A batch job serves no gRPC health service: its exit code (the Job's status) is its health.
HEALTHCHECK NONE
ENTRYPOINT ["python", "-m", "models"]
CMD ["--help"]
