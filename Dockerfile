# syntax=docker/dockerfile:1
# Orsay: one image for `orsay bot` and `orsay worker`, with the VGG19 weights and the gallery
# baked in so a container starts painting without downloading anything.
#
#   docker build -t orsay .                                   # CUDA build (PyPI's torch wheels)
#   docker build --build-arg TORCH_FLAVOR=cpu -t orsay:cpu .  # CPU-only, ~1 GB instead of ~6 GB
#
# Python slim + torch wheels rather than a pytorch/pytorch base: the wheels bundle the CUDA
# runtime, so one Dockerfile gives both flavours and the same Python as the tests.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
FROM ${PYTHON_IMAGE}

ARG TORCH_FLAVOR=cuda
# cpu: the index of the CPU-only builds of the torch and torchvision releases the lock pins.
ARG TORCH_CPU_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    TORCH_HOME=/opt/orsay/torch \
    ORSAY_GALLERY_DIR=/opt/orsay/gallery \
    ORSAY_DATA_DIR=/data \
    ORSAY_METRICS_PORT=9100 \
    ORSAY_LOG_LEVEL=INFO

# DejaVu gives the /styles contact sheet accents and Cyrillic; Pillow's built-in font is ASCII-only.
# Any version of a font package will do, so it is not pinned.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*

# Every dependency from the runtime lock (`make lock`), pinned with its sha256: the biggest
# layer, rebuilt only when the lock or the flavour changes. cuda installs the lock as it is
# (PyPI's torch wheels bundle the CUDA runtime). cpu leaves out the torch, torchvision, triton
# and CUDA entries, then takes the same torch and torchvision releases, read from the lock,
# from the CPU-only index (whose wheels have other hashes than PyPI's).
COPY requirements/runtime.txt /tmp/runtime.txt
RUN case "${TORCH_FLAVOR}" in \
      cuda) pip install --no-cache-dir --require-hashes --no-deps -r /tmp/runtime.txt ;; \
      cpu) \
        torch="$(sed -n 's/^torch==\([^ ;]*\).*/\1/p' /tmp/runtime.txt)" \
        && vision="$(sed -n 's/^torchvision==\([^ ;]*\).*/\1/p' /tmp/runtime.txt)" \
        && awk '/^[a-z]/ { skip = ($0 ~ /^(torch|torchvision|triton|nvidia-|cuda-)/) } !skip' \
             /tmp/runtime.txt > /tmp/runtime-cpu.txt \
        && pip install --no-cache-dir --require-hashes --no-deps -r /tmp/runtime-cpu.txt \
        && pip install --no-cache-dir --no-deps --index-url "${TORCH_CPU_INDEX_URL}" \
             "torch==${torch}+cpu" "torchvision==${vision}+cpu" ;; \
      *) echo "TORCH_FLAVOR must be cuda or cpu, not ${TORCH_FLAVOR}" >&2; exit 1 ;; \
    esac \
    && rm -f /tmp/runtime*.txt

# The ImageNet VGG19 weights (548 MB) land in TORCH_HOME, where `--weights torchvision` finds them.
RUN python -c "from torchvision.models import VGG19_Weights, vgg19; vgg19(weights=VGG19_Weights.IMAGENET1K_V1)" \
    && chmod -R a+rX "${TORCH_HOME}"

WORKDIR /opt/orsay/src
COPY pyproject.toml README.md LICENSE ./
COPY engine ./engine
COPY bot ./bot
COPY orsay ./orsay
# --no-deps: everything it needs came from the lock above
RUN pip install --no-cache-dir --no-deps .

# The gallery paintings, checksummed, into the folder ORSAY_GALLERY_DIR points at.
RUN orsay gallery fetch \
    && chmod -R a+rX "${ORSAY_GALLERY_DIR}"

RUN useradd --system --no-log-init --uid 10001 --user-group --home-dir /data orsay \
    && mkdir -p /data \
    && chown orsay:orsay /data

USER 10001:10001
WORKDIR /data
EXPOSE 9100
# `orsay bot` and `orsay worker` stop taking work on SIGTERM and let a running job finish
# within ORSAY_SHUTDOWN_GRACE (or hand it back to the queue); give them that long to stop.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["python", "-m", "engine.observability.health"]
ENTRYPOINT ["orsay"]
CMD ["bot"]
