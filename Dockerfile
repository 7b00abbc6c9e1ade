# sse_service in a container: docker build -t sse-service . && docker run -p 8000:8000 sse-service
# (no HA_URL: the demo). Settings come from the environment at run time; nothing secret is in here.
#
# BASE is any Debian-like image with python3 (3.11+) and its venv module; the default is the
# official slim image. tests/test_container.py builds this file on a Debian base made with mmdebstrap.
ARG BASE=python:3.12-slim

FROM ${BASE} AS build
# The pinned dependencies, exactly (the project itself, the last line, runs from /app below).
RUN python3 -m venv /opt/venv
COPY requirements.txt /tmp/requirements.txt
RUN grep -vxF '.' /tmp/requirements.txt > /tmp/pinned.txt \
    && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check --no-deps -r /tmp/pinned.txt \
    && /opt/venv/bin/pip check \
    && /opt/venv/bin/pip uninstall --yes --quiet pip setuptools

FROM ${BASE}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOST=0.0.0.0 \
    PORT=8000 \
    GRACEFUL_TIMEOUT=8
# A user of its own, with no shell, no home and no write access to the code.
RUN groupadd --gid 10001 sse \
    && useradd --no-log-init --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin sse
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY sse_service ./sse_service
COPY web ./web
RUN python -m compileall -q sse_service
USER 10001:10001
EXPOSE 8000
# SIGTERM reaches the service itself (exec form, no shell in between): it ends every stream with
# a short retry: and exits within GRACEFUL_TIMEOUT, under the 10 s docker/podman stop gives.
STOPSIGNAL SIGTERM
# Liveness (200 even while Home Assistant is down); platforms that route by readiness use /readyz.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as r; r.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8000'), timeout=4)"]
CMD ["python", "-m", "sse_service"]
