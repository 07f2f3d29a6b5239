#!/usr/bin/env bash
# Conversation benchmark (issue 18 item 5): time-to-first-token of each turn of a stored
# conversation on ferrogate's embedded engine (`POST /v1/responses` with `conversation`, streamed:
# the client sends only the new question, the gateway the whole history), against the same turns
# sent as full history to llama.cpp's llama-server (`/v1/chat/completions`, its prompt cache on)
# in the same run, when one is available. Each server runs alone, one after the other.
#
# Reported per turn: TTFT (ms) on each server, and ferrogate's `input_tokens` and
# `input_tokens_details.cached_tokens` (the engine's prefix reuse: turn N+1 should find turn N's
# prompt and answer cached, so its TTFT stays close to turn 1's).
#
# Usage: scripts/bench-conversation.sh
# Env: BENCH_TURNS (10), BENCH_MAX_TOKENS (32 per answer), BENCH_THREADS (nproc),
#      FERROGATE_BIN (default target/release/ferrogate, else target/debug/ferrogate),
#      LLAMA_SERVER_BIN (default ~/.cache/ferrogate/llama-server/bin/llama-server; skipped if absent),
#      PYTHON (default .venv/bin/python, needs httpx).
# Output: a markdown table on stdout and in bench-results/conversation-<timestamp>/report.md.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TURNS="${BENCH_TURNS:-10}"
MAX_TOKENS="${BENCH_MAX_TOKENS:-32}"
THREADS="${BENCH_THREADS:-$(nproc)}"
MODEL="$FG_MODEL_DIR/SmolLM2-135M-Instruct.Q4_1.gguf"
PY="${PYTHON:-$FG_ROOT/.venv/bin/python}"
GATEWAY_BIN="${FERROGATE_BIN:-$FG_ROOT/target/release/ferrogate}"
[ -x "$GATEWAY_BIN" ] || GATEWAY_BIN="$FG_ROOT/target/debug/ferrogate"
LLAMA_SERVER="${LLAMA_SERVER_BIN:-$FG_CACHE/llama-server/bin/llama-server}"
[ -x "$GATEWAY_BIN" ] || fg_die "no ferrogate binary: cargo build --release -p ferrogate (or set FERROGATE_BIN)"
[ -f "$MODEL" ] || fg_die "model not found at $MODEL: run scripts/fetch-models.sh"
"$PY" -c 'import httpx' 2>/dev/null || fg_die "$PY lacks httpx: python3 -m venv .venv && .venv/bin/pip install -r tests/sdk/requirements.txt"

OUT="$FG_ROOT/bench-results/conversation-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT"
SERVER_PID=""
cleanup() { [ -z "$SERVER_PID" ] || fg_stop_pid "$SERVER_PID"; }
trap cleanup EXIT

# The measuring client: MODE responses (one question per turn, the gateway keeps the history)
# or chat (the whole history every turn). Writes one JSON line per turn.
measure() {
  "$PY" - "$1" "$2" "$TURNS" "$MAX_TOKENS" <<'PY'
import json, sys, time
import httpx

mode, base, turns, max_tokens = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
SYSTEM = "You are a helpful assistant. Answer in one short sentence."
questions = [f"Name one fact about the number {n}." for n in range(1, turns + 1)]

def sse(resp):
    event = None
    for line in resp.iter_lines():
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: ") and line[6:] != "[DONE]":
            yield event, json.loads(line[6:])

# A new connection per turn, for both servers: llama-server half-closes a connection after a
# streamed answer, and a request sent on it before the client notices fails ("Server disconnected
# without sending a response"). A connect on loopback costs ~0.1 ms, nothing beside a TTFT.
with httpx.Client(timeout=300, limits=httpx.Limits(max_keepalive_connections=0)) as http:
    history = [{"role": "system", "content": SYSTEM}]
    conv = http.post(f"{base}/v1/conversations", json={}).json()["id"] if mode == "responses" else None
    for turn, q in enumerate(questions, 1):
        if mode == "responses":
            body = {"model": "smollm2", "input": q, "conversation": conv, "instructions": SYSTEM,
                    "max_output_tokens": max_tokens, "temperature": 0, "stream": True}
            url = f"{base}/v1/responses"
        else:
            history.append({"role": "user", "content": q})
            body = {"model": "smollm2", "messages": history, "max_tokens": max_tokens, "temperature": 0,
                    "stream": True, "stream_options": {"include_usage": True}, "cache_prompt": True}
            url = f"{base}/v1/chat/completions"
        start, ttft, text, usage = time.perf_counter(), None, "", {}
        with http.stream("POST", url, json=body) as resp:
            resp.raise_for_status()
            for event, data in sse(resp):
                if mode == "responses":
                    if event == "response.output_text.delta":
                        ttft = ttft or time.perf_counter() - start
                        text += data["delta"]
                    elif event in ("response.completed", "response.incomplete"):
                        usage = data["response"]["usage"]
                    elif event in ("response.failed", "error"):
                        sys.exit(f"turn {turn} failed: {data}")
                else:
                    for choice in data.get("choices") or []:
                        piece = (choice.get("delta") or {}).get("content") or ""
                        if piece:
                            ttft = ttft or time.perf_counter() - start
                            text += piece
                    if data.get("usage"):
                        u = data["usage"]
                        usage = {"input_tokens": u["prompt_tokens"],
                                 "input_tokens_details": {"cached_tokens": (u.get("prompt_tokens_details") or {}).get("cached_tokens", 0)}}
        if mode == "chat":
            history.append({"role": "assistant", "content": text})
        print(json.dumps({"turn": turn, "ttft_ms": round((ttft or 0) * 1000, 1),
                          "input_tokens": usage.get("input_tokens"),
                          "cached_tokens": (usage.get("input_tokens_details") or {}).get("cached_tokens")}), flush=True)
PY
}

# === ferrogate ===
port="$(fg_free_port)"
cat >"$OUT/ferrogate.toml" <<TOML
[server]
listen = "127.0.0.1:$port"
[backends.smollm2]
kind = "embedded"
model_path = "$MODEL"
parallel = 1
threads = $THREADS
ctx_per_seq = 4096
[deployments.smollm2]
backends = ["smollm2"]
[conversations]
database_url = "sqlite://$OUT/conversations.db"
context_tokens = 4096
TOML
fg_log "ferrogate ($GATEWAY_BIN): $TURNS turns, $MAX_TOKENS tokens each, port $port"
"$GATEWAY_BIN" serve --config "$OUT/ferrogate.toml" >"$OUT/ferrogate.log" 2>&1 &
SERVER_PID=$!
fg_wait_http "http://127.0.0.1:$port/ready" 120 "$SERVER_PID" || fg_die "ferrogate did not get ready (see $OUT/ferrogate.log)"
measure responses "http://127.0.0.1:$port" >"$OUT/ferrogate.jsonl"
fg_stop_pid "$SERVER_PID"
SERVER_PID=""

# === llama-server ===
if [ -x "$LLAMA_SERVER" ]; then
  port="$(fg_free_port)"
  fg_log "llama-server ($LLAMA_SERVER): the same turns as full history, port $port"
  "$LLAMA_SERVER" -m "$MODEL" --host 127.0.0.1 --port "$port" -t "$THREADS" -c 4096 -np 1 --jinja --no-webui \
    >"$OUT/llama-server.log" 2>&1 &
  SERVER_PID=$!
  fg_wait_http "http://127.0.0.1:$port/health" 120 "$SERVER_PID" || fg_die "llama-server did not get ready (see $OUT/llama-server.log)"
  measure chat "http://127.0.0.1:$port" >"$OUT/llama-server.jsonl"
  fg_stop_pid "$SERVER_PID"
  SERVER_PID=""
else
  fg_warn "no llama-server at $LLAMA_SERVER (scripts/build-llama-server.sh builds one): ferrogate only"
  : >"$OUT/llama-server.jsonl"
fi

"$PY" - "$OUT" <<'PY' | tee "$OUT/report.md"
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
load = lambda name: [json.loads(l) for l in (out / f"{name}.jsonl").read_text().splitlines() if l.strip()]
fg, ll = load("ferrogate"), {r["turn"]: r for r in load("llama-server")}
print("| turn | ferrogate TTFT ms | input tokens | cached tokens | llama-server TTFT ms (full history) | its cached tokens |")
print("|---:|---:|---:|---:|---:|---:|")
for r in fg:
    l = ll.get(r["turn"], {})
    print(f"| {r['turn']} | {r['ttft_ms']} | {r['input_tokens']} | {r['cached_tokens']} | {l.get('ttft_ms', '-')} | {l.get('cached_tokens', '-')} |")
if len(fg) > 1:
    first, last = fg[0]["ttft_ms"], fg[-1]["ttft_ms"]
    print(f"\nferrogate: turn {fg[-1]['turn']} TTFT / turn 1 TTFT = {last / max(first, 0.1):.2f}")
    if fg[-1]["turn"] in ll and 1 in ll:
        print(f"llama-server: turn {fg[-1]['turn']} TTFT / turn 1 TTFT = {ll[fg[-1]['turn']]['ttft_ms'] / max(ll[1]['ttft_ms'], 0.1):.2f}")
PY
