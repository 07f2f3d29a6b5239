#!/usr/bin/env bash
# Embedded-engine throughput benchmark (`make bench-engine`): ferrogate's engine against
# llama.cpp's own llama-server, built from the same llama.cpp source (scripts/build-llama-server.sh),
# side by side in one run.
#
# Same model (SmolLM2-135M-Instruct Q4_1), same threads, llama-server's --parallel equal to
# ferrogate's, continuous batching, the same KV layout (per-sequence streams by default) and the
# same batch sizes on both. Each server
# runs alone (one after the other, never both at once on 2 cores) and gets the same load from
# `ferrogate bench`: streaming /v1/chat/completions, greedy (both generate the same text),
# at 1, 4, 8 and 16 concurrent clients. Reported per level: aggregate completion tokens/s,
# mean and p95 time-to-first-token, mean inter-token latency, per-request time per output token
# (p50/p95), completed and failed requests with every failure's cause, and the requests resent
# because a kept-alive connection was found closed; then a check that both servers completed the
# same requests (tokens/s over fewer requests would flatter the one that failed), and the targets (issue 3):
# ferrogate tok/s >= llama-server's and TTFT no worse at every level, and ferrogate at 8
# clients >= 1.6x its single-client tok/s. Each prints PASS or FAIL.
#
# Usage: scripts/bench-engine.sh [--llama-only | --ferrogate-only]
# Env: BENCH_LEVELS ("1,4,8,16"), BENCH_REQUESTS (per level, default 0 = 4 x clients, min 8),
#      BENCH_MAX_TOKENS (128), BENCH_PARALLEL (8), BENCH_THREADS (nproc), BENCH_CTX (2048 per
#      sequence), BENCH_BATCH (512), BENCH_KV_UNIFIED (0; 1 = one shared KV cache on both),
#      BENCH_STRICT=1 (exit 1 when a target fails),
#      FERROGATE_BIN (a prebuilt binary instead of building target/release/ferrogate),
#      LLAMA_SERVER_BIN (a prebuilt llama-server).
# Output: a markdown report on stdout and in bench-results/engine-<timestamp>/report.md with the
# raw JSON and server logs beside it (gitignored). Takes about 5 minutes after the builds.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

LEVELS="${BENCH_LEVELS:-1,4,8,16}"
REQUESTS="${BENCH_REQUESTS:-0}"
MAX_TOKENS="${BENCH_MAX_TOKENS:-128}"
PARALLEL="${BENCH_PARALLEL:-8}"
THREADS="${BENCH_THREADS:-$(nproc)}"
CTX="${BENCH_CTX:-2048}"
BATCH="${BENCH_BATCH:-512}"
# 0: one KV stream per sequence (both servers' default; batch-invariant, see docs/ENGINE.md),
# 1: one shared cache (llama-server --kv-unified, ferrogate kv_unified = true).
KV_UNIFIED_FLAG="${BENCH_KV_UNIFIED:-0}"
if [ "$KV_UNIFIED_FLAG" = 1 ]; then KV_UNIFIED=true; LLAMA_KV=--kv-unified; else KV_UNIFIED=false; LLAMA_KV=--no-kv-unified; fi
MODEL_FILE="SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL="$FG_MODEL_DIR/$MODEL_FILE"
GATEWAY_BIN="${FERROGATE_BIN:-$FG_ROOT/${CARGO_TARGET_DIR:-target}/release/ferrogate}"
READY_TIMEOUT=120

RUN_LLAMA=1
RUN_FERROGATE=1
case "${1:-}" in
--llama-only) RUN_FERROGATE=0 ;;
--ferrogate-only) RUN_LLAMA=0 ;;
"") ;;
*) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
esac

OUT="$FG_ROOT/bench-results/engine-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT"
SERVER_PID=""
cleanup() {
  [ -z "$SERVER_PID" ] || fg_stop_pid "$SERVER_PID" 10
}
trap cleanup EXIT INT TERM

[ -f "$MODEL" ] || fg_die "$MODEL is missing: run 'make fetch-models'"

# === builds ===

if [ "$RUN_LLAMA" = 1 ]; then
  LLAMA_SERVER="${LLAMA_SERVER_BIN:-$("$FG_ROOT/scripts/build-llama-server.sh")}"
fi
if [ -z "${FERROGATE_BIN:-}" ]; then
  fg_require_cargo
  fg_log "building target/release/ferrogate"
  (cd "$FG_ROOT" && cargo build --release -q -p ferrogate)
fi
[ -x "$GATEWAY_BIN" ] || fg_die "$GATEWAY_BIN not found"

# bench LABEL PORT: the load, one markdown row per level, JSON in $OUT/LABEL.json.
bench() {
  local before
  before="$(fg_load1)"
  "$GATEWAY_BIN" bench --url "http://127.0.0.1:$2" --model smollm2 --label "$1" \
    --concurrency "$LEVELS" --requests "$REQUESTS" --max-tokens "$MAX_TOKENS" \
    --json "$OUT/$1.json" | tee "$OUT/$1.md"
  printf '%s %s\n' "$before" "$(fg_load1)" >"$OUT/$1.load"
}

# wait_ready URL NAME LOG
wait_ready() {
  local rc=0
  fg_wait_http "$1" "$READY_TIMEOUT" "$SERVER_PID" || rc=$?
  [ "$rc" -eq 0 ] || { tail -n 30 "$3" >&2; fg_die "$2 did not become ready (see $3)"; }
}

# === llama-server ===

if [ "$RUN_LLAMA" = 1 ]; then
  port="$(fg_free_port)"
  fg_log "llama-server: $PARALLEL slots x $CTX ctx, $THREADS threads, port $port"
  "$LLAMA_SERVER" -m "$MODEL" --host 127.0.0.1 --port "$port" \
    -t "$THREADS" -tb "$THREADS" -c $((CTX * PARALLEL)) -np "$PARALLEL" "$LLAMA_KV" -cb \
    -b "$BATCH" -ub "$((BATCH < 512 ? BATCH : 512))" --jinja --no-webui \
    >"$OUT/llama-server.log" 2>&1 &
  SERVER_PID=$!
  wait_ready "http://127.0.0.1:$port/health" llama-server "$OUT/llama-server.log"
  bench llama-server "$port"
  fg_stop_pid "$SERVER_PID" 10
  SERVER_PID=""
fi

# === ferrogate (embedded engine) ===

if [ "$RUN_FERROGATE" = 1 ]; then
  port="$(fg_free_port)"
  cat >"$OUT/ferrogate.toml" <<EOF
[server]
listen = "127.0.0.1:$port"

[backends.local]
kind = "embedded"
model_path = "$MODEL"
threads = $THREADS
parallel = $PARALLEL
ctx_per_seq = $CTX
batch_size = $BATCH
kv_unified = $KV_UNIFIED

[deployments.smollm2]
backends = ["local"]
EOF
  fg_log "ferrogate: $PARALLEL slots x $CTX ctx, $THREADS threads, port $port"
  "$GATEWAY_BIN" serve --config "$OUT/ferrogate.toml" >"$OUT/ferrogate.log" 2>&1 &
  SERVER_PID=$!
  wait_ready "http://127.0.0.1:$port/ready" ferrogate "$OUT/ferrogate.log"
  bench ferrogate "$port"
  fg_stop_pid "$SERVER_PID" 10
  SERVER_PID=""
fi

# === report ===

python3 - "$OUT" "$PARALLEL" "$THREADS" "$MAX_TOKENS" <<'PY' | tee "$OUT/report.md"
import json, os, sys
out, parallel, threads, max_tokens = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
def load(name):
    p = os.path.join(out, name + ".json")
    return {r["concurrency"]: r for r in json.load(open(p))} if os.path.exists(p) else {}
llama, fg = load("llama-server"), load("ferrogate")
print(f"\n## Engine benchmark: SmolLM2-135M-Instruct Q4_1, {threads} threads, parallel {parallel}, "
      f"max_tokens {max_tokens}, greedy, streaming\n")
print("| clients | server | completion tok/s | TTFT mean ms | TTFT p95 ms | ITL mean ms | TPOT p50 ms | TPOT p95 ms | requests | errors | reconnects |")
print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for c in sorted(set(llama) | set(fg)):
    for name, rows in (("llama-server", llama), ("ferrogate", fg)):
        r = rows.get(c)
        if r:
            print(f"| {c} | {name} | {r['tokens_per_sec']:.1f} | {r['ttft_mean_ms']:.0f} | "
                  f"{r['ttft_p95_ms']:.0f} | {r['itl_mean_ms']:.1f} | {r.get('tpot_p50_ms', 0):.1f} | "
                  f"{r.get('tpot_p95_ms', 0):.1f} | {r['requests']} | {r['errors']} | {r.get('reconnects', 0)} |")
causes = [(name, c, cause, f) for name, rows in (("llama-server", llama), ("ferrogate", fg))
          for c, r in sorted(rows.items()) for cause, f in sorted(r.get("failures", {}).items())]
print("\nFailed requests by cause:\n")
for name, c, cause, f in causes:
    print(f"- {name}, {c} clients: {f['count']} × {cause} — e.g. `{f['example']}`")
if not causes:
    print("- none")
failed = False
def check(ok, text):
    global failed
    failed |= not ok
    print(f"- {'PASS' if ok else 'FAIL'}: {text}")
print("\nTargets:\n")
for c in sorted(set(llama) & set(fg)):
    l, f = llama[c], fg[c]
    check(l["requests"] == f["requests"] and l["errors"] == 0 and f["errors"] == 0,
          f"{c} clients: both completed the same requests (llama-server {l['requests']}, "
          f"ferrogate {f['requests']}; failed {l['errors']} / {f['errors']})")
for c in sorted(set(llama) & set(fg)):
    l, f = llama[c], fg[c]
    ratio = f["tokens_per_sec"] / max(l["tokens_per_sec"], 1e-9)
    check(ratio >= 1.0, f"{c} clients: ferrogate {f['tokens_per_sec']:.1f} tok/s vs llama-server "
          f"{l['tokens_per_sec']:.1f} ({ratio:.2f}x)")
    # "No worse" with a 5% / 5 ms allowance for run-to-run noise.
    ok = f["ttft_mean_ms"] <= l["ttft_mean_ms"] * 1.05 + 5
    check(ok, f"{c} clients: TTFT mean ferrogate {f['ttft_mean_ms']:.0f} ms vs llama-server {l['ttft_mean_ms']:.0f} ms")
for name, rows in (("ferrogate", fg), ("llama-server", llama)):
    if 1 in rows and 8 in rows:
        s = rows[8]["tokens_per_sec"] / max(rows[1]["tokens_per_sec"], 1e-9)
        if name == "ferrogate":
            check(s >= 1.6, f"ferrogate 8 clients / 1 client: {s:.2f}x (target >= 1.6x)")
        else:
            print(f"- info: llama-server 8 clients / 1 client: {s:.2f}x")
print("\nMachine load (1-min load average before → after each server's run; ~0 is a quiet machine):\n")
for name in ("llama-server", "ferrogate"):
    p = os.path.join(out, name + ".load")
    if os.path.exists(p):
        b, a = open(p).read().split()
        print(f"- {name}: {b} → {a}")
open(os.path.join(out, "failed"), "w").write("1" if failed else "0")
PY
fg_log "results in $OUT"
if [ "${BENCH_STRICT:-0}" = 1 ] && [ "$(cat "$OUT/failed")" = 1 ]; then
  exit 1
fi
