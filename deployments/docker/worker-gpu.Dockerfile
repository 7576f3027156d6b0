# syntax=docker/dockerfile:1.7
# The GPU worker image: bin/worker-gpu (go build -tags cuda ./workers/gpu) in the gpu role.
#   docker build -f deployments/docker/worker-gpu.Dockerfile -t gpujobs/worker-gpu .
# Run it with the NVIDIA container runtime and one GPU (compose profile "gpu", or the Kubernetes
# GPU Deployment); on a machine without a GPU the CUDA bindings end the process at start-up.
#
# CUDA 12, not 13: gorgonia.org/cu does not compile against CUDA 13's headers. The binary uses
# the driver API only (cuda.h at build time, libcuda.so.1 at run time) and loads the committed
# PTX/fatbin kernels, so the build needs no nvcc run and the runtime needs no CUDA libraries:
# libcuda.so.1 is the host driver's, mounted into the container by the NVIDIA container toolkit.
# The toolkit refuses to start the image on a host whose driver is older than CUDA_VERSION needs;
# pass an older 12.x CUDA_VERSION for older drivers.

ARG GO_VERSION=1.26.8
ARG CUDA_VERSION=12.8.1
ARG UBUNTU=ubuntu24.04

# The Go toolchain comes from the official Go image; nothing is downloaded by hand.
FROM golang:${GO_VERSION}-trixie AS go

FROM nvidia/cuda:${CUDA_VERSION}-devel-${UBUNTU} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
COPY --from=go /usr/local/go /usr/local/go
ENV PATH=/usr/local/go/bin:${PATH} \
    GOPATH=/go \
    CGO_ENABLED=1 \
    CGO_CFLAGS=-I/usr/local/cuda/include \
    CGO_LDFLAGS=-L/usr/local/cuda/lib64/stubs
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
# Link against the driver stub; its soname is libcuda.so.1, which the runtime resolves to the
# host's driver. TAGS may add openblas (then add libopenblas-dev here, libopenblas0 below).
ARG TAGS=cuda
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    go build -tags "${TAGS}" -trimpath -buildvcs=false -ldflags '-s -w' -o /out/worker-gpu ./workers/gpu

# The base flavour (no cuBLAS, no cuDNN): the binary links libcuda.so.1 alone.
FROM nvidia/cuda:${CUDA_VERSION}-base-${UBUNTU}
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 gpujobs \
 && useradd --system --uid 10001 --gid gpujobs --home-dir /nonexistent --shell /usr/sbin/nologin gpujobs
COPY --from=build /out/worker-gpu /usr/local/bin/worker-gpu
# The toolkit mounts the driver for these capabilities (the base image sets the same).
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    WORKER_TYPE=gpu \
    LOG_FORMAT=json \
    HEALTH_ADDR=:8081
USER 10001:10001
EXPOSE 8081
# /readyz: a device opened and the worker polling gpu_queue.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8081/readyz"]
ENTRYPOINT ["/usr/local/bin/worker-gpu"]
