# spire-agent image: a static binary at /opt/spire/bin/spire-agent (the
# runbook's path) on busybox, so that the runbook's
#   kubectl exec daemonset/spire-agent -- ls -la /run/spire/sockets/
# works. The agent runs as root in the chart (without capabilities): it
# creates its socket in the node's root-owned /run/spire/sockets and reads
# other users' /proc entries to attest workloads.
#
#   docker build -f images/spire-agent.Dockerfile --build-arg VERSION=1.13.3-hive.1 \
#     -t ghcr.io/neural-hive/spire-agent:1.13.3-hive.1 .
#   docker run --rm ghcr.io/neural-hive/spire-agent:1.13.3-hive.1 --version

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
      -o /out/spire-agent ./cmd/spire-agent

FROM busybox:${BUSYBOX_VERSION}
ARG VERSION=1.13.3-hive
LABEL org.opencontainers.image.title="spire-agent" \
      org.opencontainers.image.description="hive-identity SPIFFE agent (SPIRE 1.13 compatible)" \
      org.opencontainers.image.source="https://github.com/neural-hive/hive-identity" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /out/spire-agent /opt/spire/bin/spire-agent
# Public roots for https trust bundle URLs and PostgreSQL sslmode=verify-full.
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
RUN mkdir -p /run/spire/sockets /run/spire/data
WORKDIR /opt/spire
ENTRYPOINT ["/opt/spire/bin/spire-agent"]
CMD ["run", "-config", "/run/spire/config/agent.conf"]
