# SPP-net detection service on an NVIDIA GPU host.
#
#   docker build -t spp-service .
#   docker run --gpus all -p 8000:8000 spp-service          # GPU (NVIDIA Container Toolkit)
#   docker run -e DEVICE=cpu -p 8000:8000 spp-service       # no GPU
#
# The torch wheel from PyPI carries its own CUDA 13 libraries, so a CUDA *runtime* base is
# enough (the host needs an NVIDIA driver new enough for CUDA 13, i.e. >= 580). Python 3.11
# (the project's version) comes from the deadsnakes PPA.
ARG CUDA_IMAGE=nvidia/cuda:13.0.0-runtime-ubuntu22.04
FROM ${CUDA_IMAGE}

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates gpg-agent software-properties-common \
    && add-apt-repository -y ppa:deadsnakes/ppa \
    && apt-get update \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv \
    && apt-get purge -y --auto-remove software-properties-common gpg-agent \
    && rm -rf /var/lib/apt/lists/*

RUN python3.11 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv

# The heavy, rarely changing layer first.
RUN pip install --no-cache-dir torch==2.14.1 torchvision==0.29.1

WORKDIR /srv/spp
COPY pyproject.toml README.md ./
COPY app ./app
RUN pip install --no-cache-dir . \
    && groupadd --gid 10001 spp \
    && useradd --create-home --uid 10001 --gid 10001 --shell /usr/sbin/nologin spp
COPY model_store ./model_store

# The package is installed into site-packages, so point the service at the copied store.
# JIT caches go to /tmp: the install tree is read-only for the service user.
ENV MODEL_STORE=/srv/spp/model_store \
    MODEL_NAME=zf5-shapes \
    DEVICE=auto \
    NUMBA_CACHE_DIR=/tmp/numba \
    TRITON_CACHE_DIR=/tmp/triton \
    MPLCONFIGDIR=/tmp/matplotlib

USER 10001:10001
# HTTP (own routes and the Open Inference Protocol's), and the protocol's gRPC (GRPC_PORT).
EXPOSE 8000 8081
HEALTHCHECK --interval=30s --timeout=5s --start-period=180s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4).status != 200)"]

# uvicorn (inside app.service.serve) is PID 1 and gets SIGTERM directly: it stops accepting,
# lets in-flight requests finish (up to 30 s), the lifespan drains the inference queue, and the
# process exits 0. `uvicorn app.main:app --host 0.0.0.0 --port 8000` works too (exit 143).
CMD ["python", "-m", "app.service.serve", "--host", "0.0.0.0", "--port", "8000"]
