#!/usr/bin/env bash
# Embedding throughput (`make bench-embed`): ferrogate's embedded embedding backend
# (`kind = "embedded_embeddings"`, all-MiniLM-L6-v2 GGUF) against llama.cpp's own llama-server
# (`--embedding --pooling mean`, the same GGUF, built from the same llama.cpp source by
# scripts/build-llama-server.sh), side by side in one run, one server at a time.
#
# Load (scripts/bench_embed.py): POST /v1/embeddings, float vectors, kept-alive connections;
# levels BATCHxCLIENTSxREQUESTS: batch 1 from one client (latency-bound), batch 1 from 8 clients
# (ferrogate packs concurrent requests into shared decodes), batch 32 from one client.
# Reported: embeddings/s, requests/s, latency p50/p95 and failures per level.
#
# Usage: scripts/bench-embed.sh [--ferrogate-only]
# Env: BENCH_THREADS (nproc), BENCH_LEVELS ("1x1x300 1x8x400 32x1x40"),
#      FERROGATE_BIN (a prebuilt binary instead of building target/release/ferrogate),
#      LLAMA_SERVER_BIN (a prebuilt llama-server).
# Output: a markdown table on stdout and bench-results/embed-<timestamp>/ (JSON, logs; gitignored).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

THREADS="${BENCH_THREADS:-$(nproc)}"
LEVELS="${BENCH_LEVELS:-1x1x300 1x8x400 32x1x40}"
MODEL_FILE="all-MiniLM-L6-v2.gguf"
MODEL="$FG_MODEL_DIR/$MODEL_FILE"
GATEWAY_BIN="${FERROGATE_BIN:-$FG_ROOT/${CARGO_TARGET_DIR:-target}/release/ferrogate}"
RUN_LLAMA=1
case "${1:-}" in
--ferrogate-only) RUN_LLAMA=0 ;;
"") ;;
*) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
esac

OUT="$FG_ROOT/bench-results/embed-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT"
SERVER_PID=""
cleanup() { [ -z "$SERVER_PID" ] || fg_stop_pid "$SERVER_PID" 10; }
trap cleanup EXIT INT TERM

[ -f "$MODEL" ] || fg_die "$MODEL is missing: run 'make fetch-models'"
if [ "$RUN_LLAMA" = 1 ]; then
  LLAMA_SERVER="${LLAMA_SERVER_BIN:-$("$FG_ROOT/scripts/build-llama-server.sh")}"
fi
if [ -z "${FERROGATE_BIN:-}" ]; then
  fg_require_cargo
  fg_log "building target/release/ferrogate"
  (cd "$FG_ROOT" && cargo build --release -q -p ferrogate)
fi
[ -x "$GATEWAY_BIN" ] || fg_die "$GATEWAY_BIN not found"

# run LABEL PORT LOG: wait for the server, then every level.
run() {
  local rc=0
  fg_wait_http "http://127.0.0.1:$2/health" 120 "$SERVER_PID" || rc=$?
  [ "$rc" -eq 0 ] || { tail -n 30 "$3" >&2; fg_die "$1 did not become ready (see $3)"; }
  # shellcheck disable=SC2086 # LEVELS is a list of words
  python3 "$FG_ROOT/scripts/bench_embed.py" "http://127.0.0.1:$2" minilm "$1" $LEVELS | tee -a "$OUT/results.jsonl"
  fg_stop_pid "$SERVER_PID" 10
  SERVER_PID=""
}

if [ "$RUN_LLAMA" = 1 ]; then
  port="$(fg_free_port)"
  fg_log "llama-server --embedding: $THREADS threads, port $port"
  "$LLAMA_SERVER" -m "$MODEL" --alias minilm --host 127.0.0.1 --port "$port" --embedding --pooling mean \
    -t "$THREADS" -tb "$THREADS" -c 2048 -b 2048 -ub 2048 -np 8 --no-webui >"$OUT/llama-server.log" 2>&1 &
  SERVER_PID=$!
  run llama-server "$port" "$OUT/llama-server.log"
fi

port="$(fg_free_port)"
cat >"$OUT/ferrogate.toml" <<TOML
[server]
listen = "127.0.0.1:$port"

[backends.minilm]
kind = "embedded_embeddings"
model_path = "$MODEL"
threads = $THREADS

[deployments.minilm]
backends = ["minilm"]
TOML
fg_log "ferrogate (embedded_embeddings): $THREADS threads, port $port"
"$GATEWAY_BIN" serve --config "$OUT/ferrogate.toml" >"$OUT/ferrogate.log" 2>&1 &
SERVER_PID=$!
run ferrogate "$port" "$OUT/ferrogate.log"

python3 - "$OUT/results.jsonl" <<'PY' | tee "$OUT/report.md"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("| server | batch | clients | requests | failed | embeddings/s | requests/s | p50 ms | p95 ms |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for r in rows:
    print(f"| {r['server']} | {r['batch']} | {r['clients']} | {r['requests']} | {r['failed']} | "
          f"{r['embeddings_per_s']} | {r['requests_per_s']} | {r['p50_ms']} | {r['p95_ms']} |")
PY
fg_log "results in $OUT"
