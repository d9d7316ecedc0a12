# syntax=docker/dockerfile:1
# Batchwise offline trainer: builds tf.keras models and publishes them into the model repository.
# Build from the repository root:
#   docker build -f deploy/docker/trainer.Dockerfile -t batchwise/trainer:0.1.0 .
# Runs on GPU or CPU nodes (TensorFlow falls back to the CPU when no GPU is visible).
# Datasets are the ones scikit-learn bundles; nothing is downloaded at run time.

# ---- build stage: our wheel only ----
FROM python:3.11-slim-bookworm AS wheel
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml ./
COPY models/ models/
COPY contract/ contract/
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# ---- runtime stage ----
FROM tensorflow/tensorflow:2.21.0-gpu
LABEL org.opencontainers.image.title="batchwise-trainer" \
      org.opencontainers.image.description="Batchwise offline trainer (tf.distribute, multi-worker)" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TF_CPP_MIN_LOG_LEVEL=1
COPY deploy/docker/requirements/trainer.txt /tmp/requirements.txt
COPY --from=wheel /wheels/ /tmp/wheels/
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
# tf.distribute MultiWorkerMirroredStrategy: the port each worker lists in TF_CONFIG.
EXPOSE 2222
# A batch job serves no gRPC health service: its exit code (the Job's status) is its health.
HEALTHCHECK NONE
ENTRYPOINT ["python", "-m", "models"]
CMD ["--help"]
