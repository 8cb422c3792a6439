# syntax=docker/dockerfile:1
# meshbot's image: one console script, three processes (serve, worker, scheduler).
#   docker build -t meshbot:0.1.0 .
# Runs as UID 10001 with a read-only root filesystem: it writes nowhere but /tmp (an emptyDir
# in deploy/). HOME and caches point there. Both stages use the same pinned base image.

# --- builder: wheels for meshbot and every dependency -------------------------------------
FROM python:3.11.11-slim-bookworm AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY checks ./checks
COPY handlers ./handlers
COPY knowledge ./knowledge
COPY kubesim ./kubesim
RUN pip wheel --wheel-dir /wheels .

# --- runtime ------------------------------------------------------------------------------
FROM python:3.11.11-slim-bookworm
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    XDG_CONFIG_HOME=/tmp/.config \
    TMPDIR=/tmp
# Installed from the builder's wheels only (no index), byte-compiled at build time since the
# root filesystem is read-only at run time; the wheels never land in a layer of this image.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels /wheels/meshbot-*.whl \
    && python -m compileall -q /usr/local/lib/python3.11/site-packages \
    && groupadd --system --gid 10001 meshbot \
    && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home \
       --shell /usr/sbin/nologin meshbot
USER 10001:10001
WORKDIR /tmp
# 3000: the bot (/slack/events in HTTP mode, /healthz, /readyz, /metrics); 8080: the worker's health port.
EXPOSE 3000 8080
ENTRYPOINT ["meshbot"]
CMD ["--help"]
