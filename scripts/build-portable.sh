#!/usr/bin/env bash
# Build the portable ferrogate (`make build-portable`): one binary for any x86-64-v2 or newer
# Linux CPU, for container images and packages. The default build (`make run`, `make test`) is
# compiled for the build machine's CPU (target-cpu=native) and may not start on an older one.
#
# How: the Rust code targets x86-64-v2, and llama.cpp is built as shared libraries with one CPU
# backend per x86-64 level (ggml's GGML_BACKEND_DL + GGML_CPU_ALL_VARIANTS through the
# `portable` cargo feature): x64, sse42, sandybridge, haswell, skylakex, icelake, zen4,
# alderlake, sapphirerapids, ... At start ggml scores each `libggml-cpu-*.so` against the CPU
# it runs on and loads the best; the engine logs which features it uses. AMX stays out of every
# variant (scripts/llama-cc) unless FERROGATE_LLAMA_AMX=1.
#
# Output: target/portable/dist/ferrogate/ holding `ferrogate` (rpath $ORIGIN), libllama.so,
# libggml*.so and the CPU backends: copy that directory as it is (the Dockerfile does).
# Its own target dir (target/portable), so it never invalidates the native build's artifacts.
#
# Usage: scripts/build-portable.sh     Env: CARGO_PROFILE (release)
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

fg_require_cargo
PROFILE="${CARGO_PROFILE:-release}"
TARGET="$FG_ROOT/target/portable"
DIST="$TARGET/dist/ferrogate"

# RUSTFLAGS replaces [build] rustflags from .cargo/config.toml (target-cpu=native) for this build.
# shellcheck disable=SC2016 # $ORIGIN is for the dynamic linker, not the shell
export RUSTFLAGS='-C target-cpu=x86-64-v2 -C link-arg=-Wl,-rpath,$ORIGIN'
fg_log "building the portable ferrogate ($PROFILE, x86-64-v2, llama.cpp CPU backends per level) in $TARGET"
(cd "$FG_ROOT" && CARGO_TARGET_DIR="$TARGET" cargo build --profile "$PROFILE" -p ferrogate --features portable)

out_dir="$TARGET/$PROFILE"
# llama-cpp-sys-2's OUT_DIR: lib/ holds the shared libraries (with their SONAME links), backends/
# the CPU variants. Copied from there: the build script's hard links in $out_dir are links to
# the relative symlinks, which do not resolve outside lib/.
sys_out="$(find "$out_dir/build" -maxdepth 2 -type d -path '*llama-cpp-sys-2-*/out' -printf '%T@ %p\n' |
  sort -rn | head -n 1 | cut -d' ' -f2-)"
[ -n "$sys_out" ] && [ -d "$sys_out/backends" ] || fg_die "no llama.cpp build with backends under $out_dir/build"
rm -rf "$DIST"
mkdir -p "$DIST"
cp "$out_dir/ferrogate" "$DIST/"
cp -a "$sys_out"/lib/lib*.so* "$DIST/"
cp -L "$sys_out"/backends/libggml-cpu-*.so "$DIST/"
n="$(find "$DIST" -name 'libggml-cpu-*.so' | wc -l)"
[ "$n" -gt 0 ] || fg_die "no CPU backends (libggml-cpu-*.so) were built"
# Every library the binary needs resolves inside the directory ($ORIGIN) or from the system.
if ldd "$DIST/ferrogate" | grep -q 'not found'; then
  ldd "$DIST/ferrogate" >&2
  fg_die "the portable binary does not find its libraries in $DIST"
fi
fg_log "portable build: $DIST ($n CPU backends)"
printf '%s\n' "$DIST/ferrogate"
