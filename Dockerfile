# syntax=docker/dockerfile:1
# Latchkey in a container: a static binary on a distroless base, run as a
# non-root user, state in /var/lib/latchkey. docs/deploy.md shows how to
# run it and how to build it with a version.

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
# modernc.org/sqlite is pure Go: CGO_ENABLED=0 gives a static binary.
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/latchkey ./cmd/latchkey

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/latchkey /usr/local/bin/latchkey
# distroless's nonroot user (65532); the volume must be writable by it.
USER 65532:65532
WORKDIR /var/lib/latchkey
VOLUME ["/var/lib/latchkey"]
ENV LATCHKEY_DB=/var/lib/latchkey/latchkey.db
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
	CMD ["/usr/local/bin/latchkey", "health", "--server", "http://127.0.0.1:8080"]
ENTRYPOINT ["/usr/local/bin/latchkey"]
CMD ["server", "--addr", ":8080"]
