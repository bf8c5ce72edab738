# syntax=docker/dockerfile:1
# obskit's app image: the worker, beat, consumer and exporter all run from it (see docker-compose.yml).
# Build with the release the pipeline made (ci/release-name.sh):
#   docker build --build-arg SENTRY_RELEASE="$(SERVICE_NAME=obskit sh ci/release-name.sh)" -t obskit .

FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/obskit
WORKDIR /src
COPY pyproject.toml README.md ./
COPY observability observability
COPY workers workers
COPY consumers consumers
RUN /opt/obskit/bin/pip install --quiet .

FROM python:3.11-slim
# An image has no .git to read its release from: the pipeline bakes it in, and every event carries it.
ARG SENTRY_RELEASE
RUN test -n "$SENTRY_RELEASE" || { echo "build with --build-arg SENTRY_RELEASE=service@version" >&2; exit 1; } \
    && useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent obskit
COPY --from=build /opt/obskit /opt/obskit
ENV SENTRY_RELEASE=${SENTRY_RELEASE} \
    PATH=/opt/obskit/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /tmp
USER 10001:10001
CMD ["obskit", "--help"]
