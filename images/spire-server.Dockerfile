# spire-server image: a static binary at /opt/spire/bin/spire-server (the
# runbook's path) on busybox, whose sh runs the chart's postStart hook that
# creates the bootstrap registration entries. Runs as 65532 (non-root).
#
#   docker build -f images/spire-server.Dockerfile --build-arg VERSION=1.13.3-hive.1 \
#     -t ghcr.io/neural-hive/spire-server:1.13.3-hive.1 .
#   docker run --rm ghcr.io/neural-hive/spire-server:1.13.3-hive.1 --version

ARG GO_VERSION=1.26
ARG BUSYBOX_VERSION=1.37.0-musl

FROM golang:${GO_VERSION} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY cmd ./cmd
COPY internal ./internal
COPY pkg ./pkg
ARG VERSION=1.13.3-hive
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -trimpath \
      -ldflags "-s -w -X github.com/neural-hive/hive-identity/internal/version.Version=${VERSION}" \
      -o /out/spire-server ./cmd/spire-server

FROM busybox:${BUSYBOX_VERSION}
ARG VERSION=1.13.3-hive
LABEL org.opencontainers.image.title="spire-server" \
      org.opencontainers.image.description="hive-identity SPIFFE server (SPIRE 1.13 compatible)" \
      org.opencontainers.image.source="https://github.com/neural-hive/hive-identity" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /out/spire-server /opt/spire/bin/spire-server
# Public roots for https trust bundle URLs and PostgreSQL sslmode=verify-full.
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
# Writable at run time (volumes in the chart): data, admin socket.
RUN mkdir -p /run/spire/data /tmp/spire-server/private && chown -R 65532:65532 /run/spire /tmp/spire-server
USER 65532:65532
WORKDIR /opt/spire
ENTRYPOINT ["/opt/spire/bin/spire-server"]
CMD ["run", "-config", "/run/spire/config/server.conf"]
