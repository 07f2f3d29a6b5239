#!/usr/bin/env bash
# The portable build against the native one (`make bench-portable`): tokens/s of the embedded
# engine with both demo models, same load, one server at a time, in one run.
#
# native:   target/release/ferrogate (`make build-release`: -C target-cpu=native, llama.cpp with
#           -march=native, statically linked);
# portable: target/portable/dist/ferrogate/ferrogate (`make build-portable`: x86-64-v2 Rust code,
#           llama.cpp's CPU backend chosen at start among one build per x86-64 level).
# The load is `ferrogate bench` (streaming, greedy, max_tokens 128) at 1 and 4 clients. Each
# server's log records the CPU features its kernels use; the report shows both lines.
#
# Usage: scripts/bench-portable.sh      Env: BENCH_LEVELS ("1,4"), BENCH_REQUESTS (0 = 4 x clients,
#        min 8), BENCH_MAX_TOKENS (128), NATIVE_BIN, PORTABLE_BIN (prebuilt binaries).
# Output: a markdown report on stdout and in bench-results/portable-<timestamp>/report.md.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

LEVELS="${BENCH_LEVELS:-1,4}"
REQUESTS="${BENCH_REQUESTS:-0}"
MAX_TOKENS="${BENCH_MAX_TOKENS:-128}"
NATIVE_BIN="${NATIVE_BIN:-$FG_ROOT/target/release/ferrogate}"
PORTABLE_BIN="${PORTABLE_BIN:-$FG_ROOT/target/portable/dist/ferrogate/ferrogate}"
OUT="$FG_ROOT/bench-results/portable-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT"
SERVER_PID=""
trap '[ -z "$SERVER_PID" ] || fg_stop_pid "$SERVER_PID" 10' EXIT INT TERM

[ -x "$NATIVE_BIN" ] || (cd "$FG_ROOT" && cargo build --release -q -p ferrogate)
[ -x "$PORTABLE_BIN" ] || "$FG_ROOT/scripts/build-portable.sh" >/dev/null

declare -A MODELS=([smollm2]="SmolLM2-135M-Instruct.Q4_1.gguf" [gemma3]="gemma-3-270m-q4_k_m.gguf")
for model in smollm2 gemma3; do
  [ -f "$FG_MODEL_DIR/${MODELS[$model]}" ] || fg_die "$FG_MODEL_DIR/${MODELS[$model]} is missing: make fetch-models"
  for build in native portable; do
    bin="$NATIVE_BIN"
    [ "$build" = native ] || bin="$PORTABLE_BIN"
    port="$(fg_free_port)"
    cat >"$OUT/$model-$build.toml" <<TOML
[server]
listen = "127.0.0.1:$port"

[backends.local]
kind = "embedded"
model_path = "$FG_MODEL_DIR/${MODELS[$model]}"
threads = $(nproc)

[deployments.$model]
backends = ["local"]
TOML
    fg_log "$model on the $build build (port $port)"
    "$bin" serve --config "$OUT/$model-$build.toml" >"$OUT/$model-$build.log" 2>&1 &
    SERVER_PID=$!
    fg_wait_http "http://127.0.0.1:$port/ready" 120 "$SERVER_PID" || { tail -n 20 "$OUT/$model-$build.log" >&2; fg_die "$build did not become ready"; }
    "$NATIVE_BIN" bench --url "http://127.0.0.1:$port" --model "$model" --label "$model $build" \
      --concurrency "$LEVELS" --requests "$REQUESTS" --max-tokens "$MAX_TOKENS" \
      --json "$OUT/$model-$build.json" >"$OUT/$model-$build.md"
    fg_stop_pid "$SERVER_PID" 10
    SERVER_PID=""
  done
done

python3 - "$OUT" <<'PY' | tee "$OUT/report.md"
import json, os, re, sys
out = sys.argv[1]
print("\n## Portable vs native build: embedded engine, streaming, greedy\n")
print("| model | clients | native tok/s | portable tok/s | portable / native | native TTFT ms | portable TTFT ms |")
print("|---|---:|---:|---:|---:|---:|---:|")
for model in ("smollm2", "gemma3"):
    rows = {b: {r["concurrency"]: r for r in json.load(open(os.path.join(out, f"{model}-{b}.json")))}
            for b in ("native", "portable")}
    for c in sorted(rows["native"]):
        n, p = rows["native"][c], rows["portable"].get(c)
        if p:
            print(f"| {model} | {c} | {n['tokens_per_sec']:.1f} | {p['tokens_per_sec']:.1f} | "
                  f"{p['tokens_per_sec'] / max(n['tokens_per_sec'], 1e-9):.2f}x | {n['ttft_mean_ms']:.0f} | {p['ttft_mean_ms']:.0f} |")
print("\nCPU features the kernels used (engine log at start):\n")
for b in ("native", "portable"):
    log = open(os.path.join(out, f"smollm2-{b}.log")).read()
    m = re.search(r'cpu_features[=":]+\\?"?([A-Z0-9_ ]+)', log)
    print(f"- {b}: {m.group(1).strip() if m else 'not found in the log'}")
PY
fg_log "results in $OUT"
