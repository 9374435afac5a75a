# syntax=docker/dockerfile:1
# One image recipe for every Python package of the workspace:
#   docker build --build-arg SERVICE=ingress -t tistis-ingress .
# SERVICE is the package name without "tistis-": ingress, ai-responder, dispatcher, scorer,
# scheduler, sandbox, or cli (whose command is `tistis`: pass --build-arg COMMAND=tistis).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.9

FROM ${UV_IMAGE} AS uv

# --- build: a virtualenv holding exactly the locked dependencies of one package ----------------
FROM ${PYTHON_IMAGE} AS build
COPY --from=uv /uv /usr/local/bin/uv
# Same interpreter as the runtime stage (never a downloaded one), bytecode compiled now because
# the runtime filesystem is read-only, and a copy instead of hardlinks from the cache mount.
ENV UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /src
ARG SERVICE=ingress
# Dependencies first, from the lock only, so that a code change does not re-download them.
RUN --mount=type=cache,target=/root/.cache/uv \
    --mount=type=bind,source=uv.lock,target=uv.lock \
    --mount=type=bind,source=pyproject.toml,target=pyproject.toml \
    uv sync --frozen --no-dev --no-install-workspace --package "tistis-${SERVICE}"
# Then the workspace packages themselves, as wheels: the runtime needs no source tree.
COPY . /src
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable --package "tistis-${SERVICE}"

# --- runtime: slim, non-root, nothing but the virtualenv ---------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ARG SERVICE=ingress
ARG COMMAND=""
# A numeric user: Kubernetes can only enforce runAsNonRoot against a numeric UID.
# /data/media: the patient files' directory (MEDIA_DIR), owned by the service user so that a
# fresh volume mounted there is writable on a read-only root filesystem.
RUN groupadd --system --gid 10001 tistis \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin tistis \
 && mkdir -p /data/media && chown 10001:10001 /data/media
COPY --from=build /app/.venv /app/.venv
# Demo data for `tistis seed-demo`; small, so every image carries it.
COPY fixtures /app/fixtures
# Exec-form ENTRYPOINT needs a literal path: link the service's console script to a fixed name,
# and fail the build here if the package has no such command.
RUN cmd="${COMMAND:-tistis-${SERVICE}}" \
 && ln -s "/app/.venv/bin/${cmd}" /app/entrypoint \
 && test -x /app/entrypoint
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SERVICE_NAME=${SERVICE} \
    HTTP_PORT=8000 \
    MEDIA_DIR=/data/media
WORKDIR /app
USER 10001:10001
EXPOSE 8000
# Python is PID 1 (exec form, no shell in between), so SIGTERM reaches the service's handler,
# which drains in-flight messages within SHUTDOWN_GRACE_SECONDS (25 s by default).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('HTTP_PORT', '8000'), timeout=2)"]
ENTRYPOINT ["/app/entrypoint"]
