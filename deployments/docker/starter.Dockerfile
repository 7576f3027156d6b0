# syntax=docker/dockerfile:1.7
# The starter image: the CLI that submits jobs and reads their results.
#   docker build -f deployments/docker/starter.Dockerfile -t gpujobs/starter .
#   docker compose run --rm starter submit --params '{"job_type":"matrix_multiply","size":1000}'
# The starter runs no kernel, so it is built without cgo: a static binary on distroless/static,
# which has no shell, no package manager and runs as nonroot. It is a one-shot CLI, so it has no
# health check.

ARG GO_VERSION=1.26.8

FROM golang:${GO_VERSION}-trixie AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags '-s -w' -o /out/starter ./starter

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/starter /usr/local/bin/starter
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/starter"]
