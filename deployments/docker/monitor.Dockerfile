# syntax=docker/dockerfile:1.7
# The monitor image: `monitor serve`, the one consumer of the result queue; it stores results in
# RESULTS_FILE and serves the API, the dashboard, /healthz and /metrics on MONITOR_ADDR.
#   docker build -f deployments/docker/monitor.Dockerfile -t gpujobs/monitor .
# The monitor runs no kernel, so it is built without cgo; monitor-report (the charts of
# `monitor report`) is a binary of its own so that serve links no plotting code.

ARG GO_VERSION=1.26.8
ARG DEBIAN_RELEASE=trixie

FROM golang:${GO_VERSION}-${DEBIAN_RELEASE} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags '-s -w' -o /out/monitor ./monitor \
 && CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags '-s -w' -o /out/monitor-report ./monitor/report

# debian-slim rather than distroless/static only for curl, the health check's HTTP client.
FROM debian:${DEBIAN_RELEASE}-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 gpujobs \
 && useradd --system --uid 10001 --gid gpujobs --home-dir /nonexistent --shell /usr/sbin/nologin gpujobs \
 && mkdir -p /results \
 && chown gpujobs:gpujobs /results
COPY --from=build /out/monitor /out/monitor-report /usr/local/bin/
# In a container the API must listen on all interfaces; results go to the /results volume.
ENV LOG_FORMAT=json \
    MONITOR_ADDR=0.0.0.0:8000 \
    RESULTS_FILE=/results/results.jsonl
USER 10001:10001
VOLUME ["/results"]
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
  CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8000/healthz"]
ENTRYPOINT ["/usr/local/bin/monitor"]
CMD ["serve"]
