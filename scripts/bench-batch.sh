#!/usr/bin/env bash
# Batch-versus-interactive benchmark (issue 19): interactive p50/p99 time to first token on the
# embedded engine (SmolLM2) alone, then while a 1,000-line batch (short max_tokens) runs on the
# same gateway and engine — background work must take spare capacity and yield to live traffic.
# Also reports the batch's rate with and without the interactive load beside it.
#
# One gateway (release build, tenancy on over SQLite), one engine; the client is
# scripts/bench-batch.py (open-loop arrivals at BENCH_RATE/s, streamed, TTFT per request).
#
# Usage: scripts/bench-batch.sh
# Env: BENCH_LINES (1000), BENCH_BATCH_MAX_TOKENS (8), BENCH_MAX_TOKENS (16, interactive),
#      BENCH_RATE (1 interactive request/s), BENCH_SECS (60 per phase), BENCH_PARALLEL (4 engine
#      slots), BENCH_CONCURRENCY (4 batch lines at once), BENCH_THREADS (nproc),
#      FERROGATE_BIN (default target/release/ferrogate), PYTHON (default .venv/bin/python, httpx).
# Output: a markdown table on stdout and in bench-results/batch-<timestamp>/report.md.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PARALLEL="${BENCH_PARALLEL:-4}"
CONCURRENCY="${BENCH_CONCURRENCY:-4}"
THREADS="${BENCH_THREADS:-$(nproc)}"
MODEL="$FG_MODEL_DIR/SmolLM2-135M-Instruct.Q4_1.gguf"
PY="${PYTHON:-$FG_ROOT/.venv/bin/python}"
GATEWAY_BIN="${FERROGATE_BIN:-$FG_ROOT/target/release/ferrogate}"
[ -x "$GATEWAY_BIN" ] || fg_die "no ferrogate binary at $GATEWAY_BIN: cargo build --release -p ferrogate (or set FERROGATE_BIN)"
[ -f "$MODEL" ] || fg_die "model not found at $MODEL: run scripts/fetch-models.sh"
"$PY" -c 'import httpx' 2>/dev/null || fg_die "$PY lacks httpx: python3 -m venv .venv && .venv/bin/pip install -r tests/sdk/requirements.txt"

OUT="$FG_ROOT/bench-results/batch-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT"
SERVER_PID=""
cleanup() { [ -z "$SERVER_PID" ] || fg_stop_pid "$SERVER_PID"; }
trap cleanup EXIT

port="$(fg_free_port)"
master="bench-master-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
cat >"$OUT/ferrogate.toml" <<TOML
[server]
listen = "127.0.0.1:$port"
[tenancy]
master_key = "$master"
database_url = "sqlite://$OUT/ferrogate.db"
[backends.smollm2]
kind = "embedded"
model_path = "$MODEL"
parallel = $PARALLEL
threads = $THREADS
ctx_per_seq = 1024
[deployments.smollm2]
backends = ["smollm2"]
[batches]
concurrency = $CONCURRENCY
tick_interval_secs = 1
TOML
fg_log "ferrogate ($GATEWAY_BIN): $PARALLEL engine slots, $CONCURRENCY batch lines at once, port $port"
"$GATEWAY_BIN" serve --config "$OUT/ferrogate.toml" >"$OUT/ferrogate.log" 2>&1 &
SERVER_PID=$!
fg_wait_http "http://127.0.0.1:$port/ready" 120 "$SERVER_PID" || fg_die "ferrogate did not get ready (see $OUT/ferrogate.log)"
load_before="$(fg_load1)"
"$PY" "$FG_ROOT/scripts/bench-batch.py" "http://127.0.0.1:$port" "$master" >"$OUT/result.json"
load_after="$(fg_load1)"
fg_stop_pid "$SERVER_PID"
SERVER_PID=""

"$PY" - "$OUT/result.json" "$load_before" "$load_after" <<'PY' | tee "$OUT/report.md"
import json, os, sys
r = json.load(open(sys.argv[1]))
a, w, b = r["alone"], r["with_batch"], r["batch"]
print("| interactive traffic | requests | errors | TTFT p50 ms | TTFT p99 ms | TTFT max ms |")
print("|---|---:|---:|---:|---:|---:|")
for name, x in (("alone", a), (f"while the {b['request_counts']['total']}-line batch runs", w)):
    print(f"| {name} | {x['requests']} | {x['errors']} | {x['ttft_p50_ms']} | {x['ttft_p99_ms']} | {x['ttft_max_ms']} |")
print()
print(f"batch: {b['status']}, {b['request_counts']}, {b['wall_s']} s; "
      f"{b['lines_per_s_with_interactive']} lines/s beside interactive traffic, "
      f"{b['lines_per_s_alone']} lines/s alone; ran through the whole window: {b['running_through_window']}")
print(f"load average (1 min) before / after: {sys.argv[2]} / {sys.argv[3]}; "
      f"rate {os.environ.get('BENCH_RATE', '1')}/s, {os.environ.get('BENCH_SECS', '60')} s per phase")
PY
