#!/usr/bin/env bash
# Build ferrogate with profile-guided optimization (`make build-pgo`): the release binary, laid
# out and optimized by what the gateway's hot path actually runs.
#
# Why: with a profile, LLVM inlines and lays out branches by measured counts, optimizes the
# functions the training never ran for size, and records which functions call which and how
# often, by which the linker (rust-lld) places callers beside their callees. The code a proxied
# request runs then sits together, and so does the code start-up runs (less of the binary
# resident at idle). docs/BENCHMARKS.md ("Profile-guided optimization") has the gain.
#
# How, in three steps, each in its own target directory under target/pgo (the default build's
# artifacts stay untouched):
# 1. gen: an instrumented release build (`-C profile-generate`), compiled for this CPU as the
#    default build is (target-cpu=native);
# 2. train: scripts/bench-overhead.sh runs against it, so every gateway it starts writes its counts
#    on exit: the bare gateway, auth + SQLite ledger, rate limits, resilience (balancing,
#    breakers, retries, queueing), guardrails, the response cache, metrics and tracing (as a
#    default configuration has them on), and Anthropic Messages in, each with JSON and streamed
#    answers, at c=1 and c=64 (PGO_TRAIN_SECONDS per run); the counts are merged by
#    llvm-profdata of rustc's own LLVM major version (Debian: package llvm-<major>, installed when
#    missing);
# 3. use: the release build again with `-C profile-use`.
# The C++ engine (llama.cpp) is built as usual: this is about the Rust code of the gateway.
#
# Output: target/pgo/ferrogate (printed on the last line); the merged profile beside it.
# Usage: scripts/build-pgo.sh     Env: PGO_TRAIN_SECONDS (3)
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

fg_require_cargo
PGO="$FG_ROOT/target/pgo"
RAW="$PGO/profraw"
PROFDATA="$PGO/ferrogate.profdata"
HOST="$(rustc -vV | awk '/^host:/ { print $2 }')"
LLVM_MAJOR="$(rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')"
[ -n "$LLVM_MAJOR" ] || fg_die "rustc -vV names no LLVM version"

# llvm-profdata must read the format of rustc's LLVM: the same major version.
find_profdata() {
  local candidate
  for candidate in "llvm-profdata-$LLVM_MAJOR" \
    "$(rustc --print sysroot)/lib/rustlib/$HOST/bin/llvm-profdata" llvm-profdata; do
    command -v "$candidate" >/dev/null 2>&1 || continue
    if "$candidate" --version 2>/dev/null | grep -q "LLVM version $LLVM_MAJOR\."; then
      command -v "$candidate"
      return 0
    fi
  done
  return 1
}
PROFDATA_BIN="$(find_profdata)" || {
  fg_apt_install "llvm-$LLVM_MAJOR"
  PROFDATA_BIN="$(find_profdata)" ||
    fg_die "no llvm-profdata of LLVM $LLVM_MAJOR (rustc's): install llvm-$LLVM_MAJOR, or rustup component add llvm-tools"
}

# cargo_release DIR FLAGS...: the release ferrogate in $PGO/DIR with FLAGS after target-cpu=native
# (RUSTFLAGS replaces .cargo/config.toml's rustflags). --target keeps the flags off build scripts
# and proc macros, and names the crates alike in both builds, so the profile matches.
cargo_release() {
  local dir="$1"
  shift
  (cd "$FG_ROOT" && RUSTFLAGS="-C target-cpu=native $*" CARGO_TARGET_DIR="$PGO/$dir" \
    cargo build --release -p ferrogate --target "$HOST")
  printf '%s/%s/%s/release/ferrogate\n' "$PGO" "$dir" "$HOST"
}

fg_log "1/3 instrumented build (target/pgo/gen)"
GEN_BIN="$(cargo_release gen "-C profile-generate=$RAW" | tail -n 1)"

fg_log "2/3 training: scripts/bench-overhead.sh against the instrumented gateway"
rm -rf "$RAW"
mkdir -p "$RAW"
# bench-overhead exits 1 when a target fails, which the instrumented binary's figures may well do:
# only the counts matter here.
FERROGATE_BIN="$GEN_BIN" BENCH_DURATION="${PGO_TRAIN_SECONDS:-3}" BENCH_CONCURRENCY="1 64" \
  "$FG_ROOT/scripts/bench-overhead.sh" --governance --resilience --guardrails --cache --observability \
  --anthropic || true
shopt -s nullglob
raw=("$RAW"/*.profraw)
[ "${#raw[@]}" -gt 0 ] || fg_die "the training wrote no profile to $RAW (did the gateways exit cleanly?)"
"$PROFDATA_BIN" merge -o "$PROFDATA" "${raw[@]}"
fg_log "merged ${#raw[@]} profile(s) into $PROFDATA"

fg_log "3/3 optimized build (target/pgo/use)"
USE_BIN="$(cargo_release use "-C profile-use=$PROFDATA" | tail -n 1)"
cp "$USE_BIN" "$PGO/ferrogate"
fg_log "profile-guided build: $PGO/ferrogate"
printf '%s\n' "$PGO/ferrogate"
