# Batchwise server for CPU-only nodes: LiteRT (TFLite) variants, no TensorFlow in the image.
# Build from the repository root (the legacy builder works too: no BuildKit-only feature is used):
#   docker build -f deploy/docker/cpu.Dockerfile -t batchwise/server-cpu:0.1.0 .
# PYTHON_IMAGE is the base of both stages: any Debian-based CPython 3.11 image that has
# `python -m venv` (e.g. one made locally with debootstrap where no registry is reachable).
# Models are NOT baked in: mount a model repository at /models (see deploy/README.md).
# With variant=auto the server takes the best published TFLite variant (int8 first); SavedModels
# are left out of the fallback order because this image has no TensorFlow.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build stage: a virtualenv with the pinned dependencies and our wheel ----
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
COPY deploy/docker/requirements/cpu.txt /tmp/requirements.txt
RUN pip install --no-cache-dir --requirement /tmp/requirements.txt
WORKDIR /src
COPY pyproject.toml ./
COPY service/ service/
COPY contract/ contract/
# --no-deps: every dependency came from the lock above; `pip check` proves the set is consistent.
RUN pip install --no-cache-dir --no-deps . \
    && pip check \
    && rm -rf /src/build

# ---- runtime stage: the virtualenv only, no build tools or sources ----
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="batchwise-server-cpu" \
      org.opencontainers.image.description="Batchwise gRPC inference server, LiteRT CPU variant" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    BATCHWISE_SERVER__HOST=0.0.0.0 \
    BATCHWISE_SERVER__PORT=8500 \
    BATCHWISE_METRICS__HOST=0.0.0.0 \
    BATCHWISE_METRICS__PORT=8502 \
    BATCHWISE_HTTP__HOST=0.0.0.0 \
    BATCHWISE_HTTP__PORT=8501 \
    BATCHWISE_REPOSITORY__PATH=/models \
    BATCHWISE_RUNTIME__DEVICE=cpu \
    BATCHWISE_RUNTIME__VARIANT=auto \
    BATCHWISE_RUNTIME__FALLBACK_ORDER='["int8", "dynamic", "float16", "float32"]'
RUN groupadd --system --gid 10001 batchwise \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin batchwise \
    && mkdir /models \
    && chown 10001:10001 /models
COPY --from=build /opt/venv /opt/venv
USER 10001:10001
WORKDIR /tmp
VOLUME ["/models"]
# gRPC, HTTP (REST) and Prometheus metrics.
EXPOSE 8500 8501 8502
# Model load and warm-up happen before the health service reports SERVING: allow for it.
# Without --target the probe asks 127.0.0.1 on the configured gRPC port (BATCHWISE_SERVER__PORT,
# or the file named by BATCHWISE_CONFIG_FILE), so changing the port keeps the container healthy.
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-m", "service.healthcheck", "--timeout-s", "4"]
ENTRYPOINT ["python", "-m", "service"]
CMD []
