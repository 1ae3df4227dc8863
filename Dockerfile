# SPP-net detection service: the HTTP API (PORT) and the Open Inference Protocol's gRPC (GRPC_PORT).
#
#   deploy/docker/build.sh                       # docker build on python:3.11-slim-bookworm + PyPI
#   deploy/docker/build.sh --local-base          # no Docker Hub: a local Debian stand-in base
#   docker run --gpus all --network host spp-service                  # GPU (NVIDIA Container Toolkit)
#   docker run --network host -e DEVICE=cpu spp-service               # no GPU
#
# No CUDA base image: PyPI's torch 2.14.1 wheel carries the CUDA 13.0 runtime libraries
# (nvidia-*-cu13 wheels, cuDNN 9), and on a GPU host the NVIDIA Container Toolkit mounts the
# driver. The host needs an NVIDIA driver that supports CUDA 13.0: 580 or newer.
#
# The classic builder is assumed (no BuildKit-only syntax such as RUN --mount).

ARG BASE_IMAGE=python:3.11-slim-bookworm
# The builder stage's base; deploy/docker/build.sh --local-base gives it a host CA bundle.
ARG BUILDER_IMAGE=${BASE_IMAGE}
# An image holding wheels in /wheels (build.sh --local-base makes one from this host's local
# wheel index); by default the empty stage below, and pip uses PyPI.
ARG WHEELS_IMAGE=no-local-wheels

FROM ${BASE_IMAGE} AS no-local-wheels
RUN mkdir /wheels

FROM ${WHEELS_IMAGE} AS wheels

# ----------------------------------------------------------------------------- builder
FROM ${BUILDER_IMAGE} AS builder
ARG TORCH_VERSION=2.14.1
ARG TORCHVISION_VERSION=0.29.1
# Extra pip options: build.sh --local-base passes --no-index (everything from /wheels).
ARG PIP_INDEX_OPTIONS=""
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

COPY --from=wheels /wheels /wheels
RUN python -m venv /opt/venv
WORKDIR /src

# The dependencies of pyproject.toml only: the venv does not change with the code, so a code
# change rebuilds neither this layer nor the runtime stage's copy of it.
COPY pyproject.toml ./
# hadolint ignore=DL3013
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
    && /opt/venv/bin/pip install ${PIP_INDEX_OPTIONS} --find-links /wheels \
        "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}" -r requirements.txt

# ----------------------------------------------------------------------------- runtime
FROM ${BASE_IMAGE} AS runtime

RUN groupadd --gid 10001 spp \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin spp

COPY --from=builder /opt/venv /opt/venv
WORKDIR /srv/spp
COPY model_store ./model_store
# The package runs from here (PYTHONPATH); compiled now, as the root filesystem is read-only later.
COPY app ./app
RUN python -m compileall -q app

# HOST/GRPC_HOST: a container must listen beyond its own loopback to be reachable on a normal
# network (port publishing, or another host); the service's defaults are 127.0.0.1.
# PORT/GRPC_PORT: HTTP and gRPC ports (platforms that assign PORT set it at run time).
# JIT caches (numba, Triton, matplotlib) go to /tmp: the image runs with a read-only root.
ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv \
    PYTHONPATH=/srv/spp \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOST=0.0.0.0 \
    PORT=8000 \
    GRPC_HOST=0.0.0.0 \
    GRPC_PORT=8081 \
    MODEL_STORE=/srv/spp/model_store \
    MODEL_NAME=zf5-shapes \
    DEVICE=auto \
    HOME=/tmp \
    NUMBA_CACHE_DIR=/tmp/numba \
    TRITON_CACHE_DIR=/tmp/triton \
    MPLCONFIGDIR=/tmp/matplotlib

USER 10001:10001
EXPOSE 8000 8081
# The port it listens on (PORT), not a fixed one.
HEALTHCHECK --interval=30s --timeout=5s --start-period=180s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('PORT', '8000'), timeout=4).status != 200)"]

# Exec form: the server (uvicorn inside app.service.serve) is PID 1 and gets SIGTERM itself. It
# stops accepting, lets in-flight requests finish (up to 30 s), drains the inference queue and
# exits 0. --host/--port/--workers default to HOST, PORT and WEB_CONCURRENCY.
CMD ["python", "-m", "app.service.serve"]
