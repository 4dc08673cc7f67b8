# syntax=docker/dockerfile:1
#
# vmrestore images: one build stage compiles cmd/api and cmd/worker; two small runtime stages
# (targets "api" and "worker") run them as the distroless non-root user (65532).
#
#   docker build --target api    -t vmrestore-api:local .
#   docker build --target worker -t vmrestore-worker:local .
#
# docker-compose.yml builds both. The runtime images have no shell; health is checked over
# HTTP (/healthz, /readyz) by the orchestrator.

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ENV CGO_ENABLED=0
RUN go build -trimpath -ldflags="-s -w" -o /out/bin/vmrestore-api ./cmd/api \
 && go build -trimpath -ldflags="-s -w" -o /out/bin/vmrestore-worker ./cmd/worker \
 && mkdir -p /out/srv/vmrestore/backup /out/srv/vmrestore/primary/nfs /out/srv/vmrestore/primary/local

# The storage mount points of deploy/site.example.yaml, owned by the runtime user: a fresh
# Docker named volume mounted there copies this ownership, so the worker can write.
FROM gcr.io/distroless/static-debian12:nonroot AS runtime
COPY --from=build --chown=65532:65532 /out/srv /srv
USER 65532:65532

FROM runtime AS worker
COPY --from=build /out/bin/vmrestore-worker /usr/local/bin/vmrestore-worker
ENV VMRESTORE_METRICS_ADDR=:9091
EXPOSE 9091
ENTRYPOINT ["/usr/local/bin/vmrestore-worker"]

# Last, so that a plain "docker build ." gives the api.
FROM runtime AS api
COPY --from=build /out/bin/vmrestore-api /usr/local/bin/vmrestore-api
ENV VMRESTORE_HTTP_ADDR=:8080
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/vmrestore-api"]
