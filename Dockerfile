# syntax=docker/dockerfile:1
#
# The mindmirror serving image. Targets:
#   gpu (default)  ONNX Runtime CUDA on nvidia/cuda (CUDA 13.0 + cuDNN 9, what onnxruntime-gpu
#                  1.31.1 is built for); the bundle is mounted at $MINDMIRROR_BUNDLE at run time
#   cpu            ONNX Runtime CPU on python:3.12-slim, for nodes without GPUs
#   gpu-bundled / cpu-bundled
#                  the same, with a student bundle baked in at $MINDMIRROR_BUNDLE from the named
#                  build context `bundle`:  --build-context bundle=PATH/TO/BUNDLE
#
# Only the serving dependencies go in (requirements/serve-*.txt: no torch, transformers,
# optimum...). Base images are build args so a registry mirror or a digest pin
# (`--build-arg CUDA_IMAGE=nvidia/cuda:13.0.2-cudnn-runtime-ubuntu24.04@sha256:...`) needs no edit.
# docs/deploy.md has the commands.

ARG CUDA_IMAGE=nvidia/cuda:13.0.2-cudnn-runtime-ubuntu24.04
ARG UBUNTU_IMAGE=ubuntu:24.04
ARG PYTHON_IMAGE=python:3.12-slim-trixie

# Replaced by `--build-context bundle=PATH`; an empty stage by default, so forgetting the flag
# fails on the missing manifest below instead of trying to pull an image called "bundle".
FROM scratch AS bundle

# ---------------------------------------------------------------------------------------------
# The mindmirror wheel (pure Python, built once for both variants) with pinned build tools, so
# the image does not depend on whatever setuptools is newest on the day it is built.
FROM ${PYTHON_IMAGE} AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY mindmirror ./mindmirror
COPY student ./student
COPY engine ./engine
COPY service ./service
COPY training ./training
COPY export ./export
RUN python -m venv /opt/build \
    && /opt/build/bin/pip install --no-cache-dir setuptools==84.2.1 wheel==0.48.0 \
    && /opt/build/bin/pip wheel --no-cache-dir --no-deps --no-build-isolation \
        --wheel-dir /wheels .

# ---------------------------------------------------------------------------------------------
# GPU virtual environment, built on the same Ubuntu release as the CUDA runtime image so the
# venv's interpreter path and ABI (/usr/bin/python3.12) are the ones the runtime stage has.
FROM ${UBUNTU_IMAGE} AS venv-gpu
ARG DEBIAN_FRONTEND=noninteractive
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# The Python minor version is pinned (the venv is built for it); its Ubuntu security updates
# still apply.
RUN apt-get update \
    && apt-get install -y --no-install-recommends "python3.12=3.12.*" "python3.12-venv=3.12.*" \
    && rm -rf /var/lib/apt/lists/*
COPY requirements/serve-gpu.txt /tmp/requirements.txt
COPY --from=wheel /wheels /tmp/wheels
# --no-deps + pip check: the requirement file is the complete, pinned closure; anything missing
# fails here instead of being resolved to an unpinned version.
RUN python3.12 -m venv /opt/mindmirror \
    && /opt/mindmirror/bin/pip install --no-cache-dir --no-deps -r /tmp/requirements.txt \
    && /opt/mindmirror/bin/pip install --no-cache-dir --no-deps /tmp/wheels/mindmirror-*.whl \
    && /opt/mindmirror/bin/pip check \
    && /opt/mindmirror/bin/pip uninstall --yes pip

# ---------------------------------------------------------------------------------------------
FROM ${CUDA_IMAGE} AS gpu-base
ARG DEBIAN_FRONTEND=noninteractive
ARG MINDMIRROR_BUNDLE=/models/bundle
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN apt-get update \
    && apt-get install -y --no-install-recommends "python3.12=3.12.*" \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 mindmirror \
    && useradd --system --uid 10001 --gid 10001 --home-dir /home/mindmirror --create-home \
        --shell /usr/sbin/nologin mindmirror \
    && mkdir -p "${MINDMIRROR_BUNDLE}"
COPY --from=venv-gpu /opt/mindmirror /opt/mindmirror
# Code and model stay root-owned: the server process can read them, never change them.
# HOME and the caches (CUDA's JIT cache included) point at paths the chart mounts as emptyDirs
# (read-only root filesystem); HF_HUB_OFFLINE: the server only ever reads the local bundle.
ENV PATH=/opt/mindmirror/bin:${PATH} \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/mindmirror \
    XDG_CACHE_HOME=/home/mindmirror/.cache \
    CUDA_CACHE_PATH=/home/mindmirror/.cache/nv-compute \
    HF_HUB_OFFLINE=1 \
    HF_HUB_DISABLE_TELEMETRY=1 \
    MINDMIRROR_ENV=production \
    MINDMIRROR_HOST=0.0.0.0 \
    MINDMIRROR_PORT=8000 \
    MINDMIRROR_DEVICE=cuda \
    MINDMIRROR_BUNDLE=${MINDMIRROR_BUNDLE}
WORKDIR /home/mindmirror
USER 10001:10001
EXPOSE 8000
# Docker/Podman only (Kubernetes uses the chart's probes). Python, not curl: the image has none.
HEALTHCHECK --interval=30s --timeout=5s --start-period=300s --retries=3 \
    CMD ["/opt/mindmirror/bin/python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('MINDMIRROR_PORT', '8000'), timeout=4)"]
# Exec form: the server is PID 1 and receives SIGTERM itself, so it can drain.
ENTRYPOINT ["/opt/mindmirror/bin/python", "-m", "mindmirror.service"]

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS venv-cpu
COPY requirements/serve-cpu.txt /tmp/requirements.txt
COPY --from=wheel /wheels /tmp/wheels
RUN python -m venv /opt/mindmirror \
    && /opt/mindmirror/bin/pip install --no-cache-dir --no-deps -r /tmp/requirements.txt \
    && /opt/mindmirror/bin/pip install --no-cache-dir --no-deps /tmp/wheels/mindmirror-*.whl \
    && /opt/mindmirror/bin/pip check \
    && /opt/mindmirror/bin/pip uninstall --yes pip

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS cpu-base
ARG MINDMIRROR_BUNDLE=/models/bundle
RUN groupadd --system --gid 10001 mindmirror \
    && useradd --system --uid 10001 --gid 10001 --home-dir /home/mindmirror --create-home \
        --shell /usr/sbin/nologin mindmirror \
    && mkdir -p "${MINDMIRROR_BUNDLE}"
COPY --from=venv-cpu /opt/mindmirror /opt/mindmirror
ENV PATH=/opt/mindmirror/bin:${PATH} \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/mindmirror \
    XDG_CACHE_HOME=/home/mindmirror/.cache \
    HF_HUB_OFFLINE=1 \
    HF_HUB_DISABLE_TELEMETRY=1 \
    MINDMIRROR_ENV=production \
    MINDMIRROR_HOST=0.0.0.0 \
    MINDMIRROR_PORT=8000 \
    MINDMIRROR_DEVICE=cpu \
    MINDMIRROR_BUNDLE=${MINDMIRROR_BUNDLE}
WORKDIR /home/mindmirror
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["/opt/mindmirror/bin/python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('MINDMIRROR_PORT', '8000'), timeout=4)"]
ENTRYPOINT ["/opt/mindmirror/bin/python", "-m", "mindmirror.service"]

# ---------------------------------------------------------------------------------------------
# Bundled variants. The manifest is copied first so a missing or wrong `bundle` context fails
# with "mindmirror.json: not found" rather than producing an image without a model.
FROM cpu-base AS cpu-bundled
COPY --from=bundle mindmirror.json ${MINDMIRROR_BUNDLE}/
COPY --from=bundle . ${MINDMIRROR_BUNDLE}/

FROM cpu-base AS cpu

FROM gpu-base AS gpu-bundled
COPY --from=bundle mindmirror.json ${MINDMIRROR_BUNDLE}/
COPY --from=bundle . ${MINDMIRROR_BUNDLE}/

# Last stage = what a plain `docker build .` produces.
FROM gpu-base AS gpu
