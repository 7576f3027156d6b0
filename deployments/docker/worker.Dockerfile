# syntax=docker/dockerfile:1.7
# The worker image: the scheduler and cpu roles of bin/worker, built with OpenBLAS.
#   docker build -f deployments/docker/worker.Dockerfile -t gpujobs/worker .
# One image serves both roles; WORKER_TYPE (scheduler|cpu) picks the role at run time.
#
# Build and runtime share one Debian release on purpose: the binary links libopenblas.so.0 and
# glibc from the build stage, so the runtime must have the same ABI. trixie rather than bookworm
# for OpenBLAS 0.3.29, which knows the CPUs of current GPU hosts (older builds misdetect some).

ARG GO_VERSION=1.26.8
ARG DEBIAN_RELEASE=trixie

FROM golang:${GO_VERSION}-${DEBIAN_RELEASE} AS build
# cgo against OpenBLAS: headers and the link-time library live only in this stage.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libopenblas-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=1 go build -tags openblas -trimpath -buildvcs=false -ldflags '-s -w' \
      -o /out/worker ./workers/worker

# debian-slim, not distroless: the binary needs glibc and libopenblas0 (with libgfortran), and the
# health check needs an HTTP client; curl is the one tool added. No compiler, no Go, no headers.
FROM debian:${DEBIAN_RELEASE}-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl libopenblas0 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 gpujobs \
 && useradd --system --uid 10001 --gid gpujobs --home-dir /nonexistent --shell /usr/sbin/nologin gpujobs \
 && mkdir -p /data \
 && chown gpujobs:gpujobs /data
COPY --from=build /out/worker /usr/local/bin/worker
# Container defaults: JSON logs to stderr, health endpoints on :8081, learned estimates in /data
# (a volume). OPENBLAS_NUM_THREADS should match the container's CPU limit: compose and the
# Kubernetes manifests set it; left unset, OpenBLAS starts one thread per host core.
ENV LOG_FORMAT=json \
    HEALTH_ADDR=:8081
USER 10001:10001
EXPOSE 8081
# /readyz: connected to Temporal and polling its task queue (503 while starting or draining).
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8081/readyz"]
ENTRYPOINT ["/usr/local/bin/worker"]
