#!/usr/bin/env bash
# Builds and smoke-tests a ferrogate container image on a machine that reaches no image registry
# (`make image-local`): the base is a Debian 12 root file system made by debootstrap from the
# Debian mirror and imported with `podman import`; the image (deploy/image-local/Containerfile,
# the runtime stage of ./Dockerfile) wraps the binary built on this host. Then the container runs
# with an OpenAI-compatible backend configured (no model needed), and the script checks
# `GET /health` from the host, `pm healthcheck run` (the image's HEALTHCHECK), the non-root
# user, and the OCI labels.
#
# Why not ./Dockerfile itself: its build stage starts FROM the Rust toolchain image, which cannot
# be pulled here. On a machine with a registry, `podman build .` is the real thing.
#
# Needs: root (or a working rootless podman), podman and debootstrap (Debian packages; installed
# when missing), network access to deb.debian.org. Env: FERROGATE_BIN (default
# target/release/ferrogate), IMAGE (default localhost/ferrogate:local), KEEP_BASE=1 keeps the
# rootfs tarball cache in $FG_CACHE/images.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BIN="${FERROGATE_BIN:-$FG_ROOT/${CARGO_TARGET_DIR:-target}/release/ferrogate}"
IMAGE="${IMAGE:-localhost/ferrogate:local}"
BASE=localhost/ferrogate-base:bookworm
CACHE="$FG_CACHE/images"
CTX=""
NAME="ferrogate-smoke-$$"
# This sandbox (a Firecracker VM, cgroups v1+v2 hybrid): crun refuses hybrid cgroups, and raising
# RLIMIT_NOFILE/NPROC to podman's defaults is refused, so runc with explicit, lower limits.
# Elsewhere PODMAN_OPTS="" and PODMAN_LIMITS="" give podman's defaults.
read -r -a PODMAN_OPTS <<<"${PODMAN_OPTS---runtime runc}"
read -r -a PODMAN_LIMITS <<<"${PODMAN_LIMITS---ulimit nofile=16384:16384 --ulimit nproc=8192:8192}"
pm() { podman "${PODMAN_OPTS[@]}" "$@"; }

cleanup() {
  podman rm -f "$NAME" >/dev/null 2>&1 || true
  [ -z "$CTX" ] || rm -rf "$CTX"
}
trap cleanup EXIT

[ -x "$BIN" ] || fg_die "$BIN not built (cargo build --release -p ferrogate, or set FERROGATE_BIN)"
fg_have podman && fg_have debootstrap && fg_have runc || fg_apt_install podman debootstrap uidmap runc

# 1. the base: debootstrap'ed bookworm (minbase), cached as a tarball, imported once.
if ! podman image exists "$BASE"; then
  mkdir -p "$CACHE"
  if [ ! -s "$CACHE/bookworm-minbase.tar" ]; then
    fg_log "debootstrap bookworm (minbase) from deb.debian.org"
    root="$(mktemp -d)"
    fg_as_root debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian
    fg_as_root tar -C "$root" -cf "$CACHE/bookworm-minbase.tar" .
    fg_as_root rm -rf "$root"
  fi
  fg_log "podman import → $BASE"
  podman import --change 'CMD ["/bin/bash"]' "$CACHE/bookworm-minbase.tar" "$BASE"
fi

# 2. the image around the host-built binary.
CTX="$(mktemp -d)"
cp "$BIN" "$CTX/ferrogate"
cp "$FG_ROOT/scripts/lib.sh" "$FG_ROOT/scripts/fetch-models.sh" "$FG_ROOT/deploy/docker/entrypoint.sh" \
  "$FG_ROOT/deploy/docker/ferrogate.toml" "$CTX/"
fg_log "podman build $IMAGE"
pm build "${PODMAN_LIMITS[@]}" --network host --format docker -f "$FG_ROOT/deploy/image-local/Containerfile" \
  --build-arg "REVISION=$(git -C "$FG_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
  --build-arg "CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ)" -t "$IMAGE" "$CTX"

# 3. smoke test: an upstream backend (nothing to load); the image's own port 8080 (its
# HEALTHCHECK polls it) published on a free host port.
port="$(fg_free_port)"
cat >"$CTX/smoke.toml" <<EOF
[server]
listen = "0.0.0.0:8080"
[backends.up]
kind = "openai"
base_url = "http://127.0.0.1:9/v1"
[deployments.m]
backends = ["up"]
EOF
chmod 644 "$CTX/smoke.toml"
pm run -d "${PODMAN_LIMITS[@]}" --name "$NAME" -p "127.0.0.1:$port:8080" -v "$CTX/smoke.toml:/etc/ferrogate/ferrogate.toml:ro,Z" "$IMAGE" >/dev/null
fg_wait_http "http://127.0.0.1:$port/health" 30 || {
  podman logs "$NAME" >&2 || true
  fg_die "the container did not answer /health on 127.0.0.1:$port"
}
health="$(curl -fsS "http://127.0.0.1:$port/health")"
pm healthcheck run "$NAME" || fg_die "the image's HEALTHCHECK failed"
user="$(pm exec "$NAME" id -u)"
[ "$user" = 10001 ] || fg_die "the container runs as uid $user, not 10001"
title="$(podman image inspect "$IMAGE" --format '{{ index .Labels "org.opencontainers.image.title" }}')"
[ "$title" = ferrogate ] || fg_die "OCI title label missing"
fg_log "PASS: $IMAGE serves /health ($health) as uid $user; HEALTHCHECK passes; $(podman image inspect "$IMAGE" --format '{{.Size}}') bytes"
