#!/usr/bin/env bash
# Build the service image.
#
#   deploy/docker/build.sh [--local-base] [--tag TAG]      (default tag: spp-service:latest)
#
# Without --local-base: a plain `docker build` on Docker's official python:3.11-slim-bookworm
# base, dependencies from PyPI (a normal host with Docker Hub and PyPI).
#
# With --local-base (hosts that reach Debian's mirror and a Python package index, but not Docker
# Hub), three images are made first, each only when its tag is missing, so later builds reuse
# them:
#   * spp-local-python:3.11-bookworm: the stand-in for python:3.11-slim-bookworm, a minimal
#     Debian bookworm (debootstrap from this host's Debian mirror) with Debian's python3.11,
#     `python`/`python3` in /usr/local/bin. The runtime stage is built on this one.
#   * spp-local-python:3.11-bookworm-hostca: the same plus this host's CA bundle (HOST_CA,
#     default /etc/ssl/certs/ca-certificates.crt) and a pip config naming it, for hosts whose
#     TLS is intercepted; only the builder stage uses it, so the CA never reaches the image.
#   * spp-local-wheels:<hash of the dependency list>: in /wheels, every wheel the serving
#     install needs, resolved by this host's pip (its local wheel directories and file://
#     indexes before PyPI; torch with its CUDA libraries, about 3.2 GB in all). The builder
#     stage copies them with `COPY --from` and installs offline (`--no-index`).
#     Why an image: the classic builder (Debian's docker.io has no buildx) has no cache mounts,
#     and GBs of wheels in the build context would be resent on every build; a tagged image is
#     made once per dependency change, and the layers after its `COPY --from` stay cached.
# Every build runs with `--network host` (this engine has no bridge network).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
TAG="spp-service:latest"
LOCAL_BASE=0
BASE_TAG="spp-local-python:3.11-bookworm"
BUILDER_TAG="spp-local-python:3.11-bookworm-hostca"
HOST_CA="${HOST_CA:-/etc/ssl/certs/ca-certificates.crt}"

usage() { echo "usage: $0 [--local-base] [--tag TAG]" >&2; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
        --local-base) LOCAL_BASE=1 ;;
        --tag) [ $# -ge 2 ] || usage; TAG="$2"; shift ;;
        -h|--help) usage ;;
        *) echo "unknown option: $1" >&2; usage ;;
    esac
    shift
done

command -v docker >/dev/null || { echo "error: no docker CLI on PATH (apt-get install docker.io)" >&2; exit 1; }
docker info >/dev/null 2>&1 || { echo "error: no Docker engine answers (start dockerd, see docs/docker.md)" >&2; exit 1; }

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

debian_mirror() {
    # The first Debian main-archive URI this host's apt uses (deb822 or one-line format).
    local uri
    uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null | grep -vE '^[[:space:]]*#' \
        | grep -oE 'https?://[^ ]*/debian/?( |$)' | head -n1 | tr -d ' ')
    echo "${uri:-http://deb.debian.org/debian}"
}

make_local_base() {
    image_exists "$BASE_TAG" && { echo "reusing $BASE_TAG"; return; }
    command -v debootstrap >/dev/null || { echo "error: debootstrap missing (apt-get install debootstrap)" >&2; exit 1; }
    local dir mirror
    dir=$(mktemp -d /tmp/spp-base.XXXXXX)
    mirror=$(debian_mirror)
    echo "making $BASE_TAG from $mirror (debootstrap, about a minute)"
    debootstrap --variant=minbase bookworm "$dir" "$mirror" >"$dir.log" 2>&1 \
        || { tail -n 20 "$dir.log" >&2; echo "error: debootstrap failed (log: $dir.log)" >&2; exit 1; }
    cp /etc/resolv.conf "$dir/etc/resolv.conf"
    chroot "$dir" sh -c 'export DEBIAN_FRONTEND=noninteractive; apt-get update -qq \
        && apt-get install -y -qq --no-install-recommends python3.11 python3.11-venv ca-certificates \
        && apt-get clean && rm -rf /var/lib/apt/lists/*' >>"$dir.log" 2>&1 \
        || { tail -n 20 "$dir.log" >&2; echo "error: python3.11 install in the base failed" >&2; exit 1; }
    # The official image's commands: python, python3 (and pip, through `python -m venv`).
    ln -sf /usr/bin/python3.11 "$dir/usr/local/bin/python"
    ln -sf /usr/bin/python3.11 "$dir/usr/local/bin/python3"
    : >"$dir/etc/resolv.conf"
    tar -C "$dir" -c . | docker import \
        -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8' \
        -c 'CMD ["python3"]' - "$BASE_TAG" >/dev/null
    rm -rf "$dir" "$dir.log"
}

make_builder_base() {
    image_exists "$BUILDER_TAG" && { echo "reusing $BUILDER_TAG"; return; }
    [ -f "$HOST_CA" ] || { echo "error: no CA bundle at $HOST_CA (set HOST_CA)" >&2; exit 1; }
    local dir
    dir=$(mktemp -d /tmp/spp-hostca.XXXXXX)
    cp "$HOST_CA" "$dir/host-ca.crt"
    printf '[global]\ncert = /etc/ssl/certs/host-ca.crt\n' >"$dir/pip.conf"
    printf 'FROM %s\nCOPY host-ca.crt /etc/ssl/certs/host-ca.crt\nCOPY pip.conf /etc/pip.conf\n' \
        "$BASE_TAG" >"$dir/Dockerfile"
    docker build -q --network host -t "$BUILDER_TAG" "$dir" >/dev/null
    rm -rf "$dir"
}

serving_requirements() {
    # The core dependencies of pyproject.toml (what the image installs).
    python3 - "$ROOT/pyproject.toml" <<'PY'
import sys, tomllib
print("\n".join(tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]))
PY
}

local_index_options() {
    # This host's pip sources, local ones first, PyPI last: pip keeps the first of equal
    # candidates, so a wheel on this disk wins over the same file on PyPI.
    local links indexes
    links=$(python3 -m pip config get global.find-links 2>/dev/null || true)
    indexes=$(python3 -m pip config get global.extra-index-url 2>/dev/null || true)
    local opts=()
    for link in $links; do opts+=(--find-links "$link"); done
    local first=1
    for index in $indexes; do
        if [ $first = 1 ]; then opts+=(--index-url "$index"); first=0; else opts+=(--extra-index-url "$index"); fi
    done
    if [ $first = 1 ]; then opts+=(--index-url https://pypi.org/simple); else opts+=(--extra-index-url https://pypi.org/simple); fi
    echo "${opts[@]}"
}

make_wheel_image() {
    local hash
    hash=$( (serving_requirements; echo "torch==$TORCH_VERSION torchvision==$TORCHVISION_VERSION") | sha256sum | cut -c1-12)
    WHEELS_TAG="spp-local-wheels:$hash"
    image_exists "$WHEELS_TAG" && { echo "reusing $WHEELS_TAG"; return; }
    local dir
    dir=$(mktemp -d /tmp/spp-wheels.XXXXXX)
    serving_requirements >"$dir/requirements.txt"
    echo "collecting wheels into $WHEELS_TAG (local wheel directories first, then PyPI)"
    # Wheels for the image's Python (3.11) on this host's platform (x86_64 or aarch64 Linux,
    # glibc as new as bookworm's); every serving dependency ships wheels. pip's notes about
    # local index folders without a given package are left out of the log.
    # shellcheck disable=SC2046
    if ! python3 -m pip download -q --only-binary=:all: --python-version 3.11 \
        $(local_index_options) -d "$dir/wheels" -r "$dir/requirements.txt" \
        "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION" 2>&1 \
        | { grep -v "is ignored: it is neither a file nor a directory" || true; }; then
        echo "error: pip download of the serving wheels failed (see above)" >&2
        exit 1
    fi
    tar -C "$dir" -c wheels | docker import - "$WHEELS_TAG" >/dev/null
    rm -rf "$dir"
}

TORCH_VERSION=$(sed -n 's/^ARG TORCH_VERSION=//p' "$ROOT/Dockerfile")
TORCHVISION_VERSION=$(sed -n 's/^ARG TORCHVISION_VERSION=//p' "$ROOT/Dockerfile")
BUILD_ARGS=()
if [ "$LOCAL_BASE" = 1 ]; then
    make_local_base
    make_builder_base
    make_wheel_image
    BUILD_ARGS=(--build-arg "BASE_IMAGE=$BASE_TAG" --build-arg "BUILDER_IMAGE=$BUILDER_TAG"
        --build-arg "WHEELS_IMAGE=$WHEELS_TAG" --build-arg "PIP_INDEX_OPTIONS=--no-index")
fi
echo "building $TAG"
docker build --network host "${BUILD_ARGS[@]}" -t "$TAG" "$ROOT"
