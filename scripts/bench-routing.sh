#!/usr/bin/env bash
# Routing benchmark (issue 22 item 5): two real llama.cpp servers (llama-server built from the
# vendored llama.cpp by scripts/build-llama-server.sh, SmolLM2-135M, one thread each, BENCH_SLOTS
# slots each, its RAM prompt cache off so an engine's cache is its slots) behind one ferrogate with
# three deployments over the same two backends: `routing = "prefix"`, `"p2c"` (the default) and
# `"round_robin"`. The workload: BENCH_TENANTS tenants, each with its own long system prompt
# (BENCH_PREFIX_WORDS words), asking short questions; BENCH_CONCURRENCY clients in a closed loop
# (each load point of the list in turn: 2 = one request in flight per engine, 4 = two),
# BENCH_REQUESTS streamed requests per routing mode, the same tenant/question sequence for each.
# The prefix set (16 tenants) is larger than one engine's cache (12 slots) but fits in the two
# together with room to spare, and the engines have more slots than requests in flight (an
# engine's idle slots are its cache; a second request of a tenant whose slot is busy takes
# another slot, so each engine needs spare slots beyond its tenants): prefix routing keeps each tenant on the engine that holds its prompt, P2C and round
# robin spread every tenant over both and evict each other's prefixes.
#
# Both llama-servers are restarted (on the same ports) before each mode, so every mode starts cold;
# the gateway runs once. With BENCH_WARMUP=1 (the default) each mode first sends one request per
# tenant through its own deployment, unmeasured, so the figures are the steady state rather than
# the first sight of every tenant (BENCH_WARMUP=0 measures from cold). Reported per mode: p50/p90/p99
# TTFT, generated tokens/s and requests/s (the same closed loop: equal concurrency), the prompt
# tokens the engines prefilled and reused from cache (their /metrics, warm-up included), and the
# `x-ferrogate-backend-route` reasons of the measured requests.
#
# Usage: scripts/bench-routing.sh
# Env: BENCH_TENANTS (16), BENCH_SLOTS (12), BENCH_CONCURRENCY ("2 4"), BENCH_REQUESTS (240),
#      BENCH_CACHE_RAM (0: llama-server's RAM prompt cache off, else its size in MiB),
#      BENCH_WARMUP (1), BENCH_LOG (the gateway's log level, warn),
#      BENCH_PREFIX_WORDS (400), BENCH_MAX_TOKENS (16), BENCH_MODES ("prefix p2c round_robin"),
#      BENCH_ROUTING (extra [routing] lines for the scorer, e.g. "guard_pending = 2"),
#      FERROGATE_BIN (default target/release/ferrogate, else target/debug/ferrogate),
#      LLAMA_SERVER_BIN (default ~/.cache/ferrogate/llama-server/bin/llama-server).
# Output: a markdown report on stdout and in bench-results/routing-<timestamp>/report.md.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TENANTS="${BENCH_TENANTS:-16}"
SLOTS="${BENCH_SLOTS:-12}"
# The engines' RAM prompt cache (llama-server --cache-ram, MiB; 0 = off, the engine's cache is then
# its slots).
CACHE_RAM="${BENCH_CACHE_RAM:-0}"
CONCURRENCY="${BENCH_CONCURRENCY:-2 4}"
REQUESTS="${BENCH_REQUESTS:-240}"
WARMUP="${BENCH_WARMUP:-1}"
PREFIX_WORDS="${BENCH_PREFIX_WORDS:-400}"
MAX_TOKENS="${BENCH_MAX_TOKENS:-16}"
MODES="${BENCH_MODES:-prefix p2c round_robin}"
# Extra `[routing]` settings for the prefix scorer, TOML lines ("guard_pending = 2\nqueue_weight = 2").
ROUTING_EXTRA="${BENCH_ROUTING:-}"
CTX_PER_SLOT=2048
MODEL="$FG_MODEL_DIR/SmolLM2-135M-Instruct.Q4_1.gguf"
GATEWAY_BIN="${FERROGATE_BIN:-$FG_ROOT/target/release/ferrogate}"
[ -x "$GATEWAY_BIN" ] || GATEWAY_BIN="$FG_ROOT/target/debug/ferrogate"
LLAMA_SERVER="${LLAMA_SERVER_BIN:-$FG_CACHE/llama-server/bin/llama-server}"
[ -x "$GATEWAY_BIN" ] || fg_die "no ferrogate binary: cargo build --release -p ferrogate (or set FERROGATE_BIN)"
[ -x "$LLAMA_SERVER" ] || fg_die "no llama-server at $LLAMA_SERVER: run scripts/build-llama-server.sh"
[ -f "$MODEL" ] || fg_die "model not found at $MODEL: run scripts/fetch-models.sh smollm2"
fg_have python3 || fg_die "python3 not found"
fg_have curl || fg_die "curl not found"

OUT="$FG_ROOT/bench-results/routing-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT"
GW_PID="" ENGINE_PIDS=()
stop_engines() {
  local pid
  for pid in "${ENGINE_PIDS[@]}"; do fg_stop_pid "$pid"; done
  ENGINE_PIDS=()
}
cleanup() {
  stop_engines
  [ -z "$GW_PID" ] || fg_stop_pid "$GW_PID"
}
trap cleanup EXIT

ENGINE_PORTS=("$(fg_free_port)" "$(fg_free_port)")
[ "${ENGINE_PORTS[0]}" != "${ENGINE_PORTS[1]}" ] || ENGINE_PORTS[1]="$(fg_free_port)"
GW_PORT="$(fg_free_port)"

# start_engines LABEL: both llama-servers, fresh (empty caches), on their fixed ports.
start_engines() {
  local i port
  for i in 0 1; do
    port="${ENGINE_PORTS[$i]}"
    "$LLAMA_SERVER" -m "$MODEL" --host 127.0.0.1 --port "$port" -t 1 -tb 1 -np "$SLOTS" \
      -c $((SLOTS * CTX_PER_SLOT)) --metrics --cache-ram "$CACHE_RAM" --no-webui --jinja \
      >"$OUT/llama-$1-$i.log" 2>&1 &
    ENGINE_PIDS+=("$!")
  done
  for i in 0 1; do
    fg_wait_http "http://127.0.0.1:${ENGINE_PORTS[$i]}/health" 120 "${ENGINE_PIDS[$i]}" ||
      fg_die "llama-server $i did not get ready (see $OUT/llama-$1-$i.log)"
  done
}

# engine_metrics LABEL: both engines' /metrics, saved.
engine_metrics() {
  local i
  for i in 0 1; do
    curl -fsS "http://127.0.0.1:${ENGINE_PORTS[$i]}/metrics" >"$OUT/metrics-$1-$i.txt" || : >"$OUT/metrics-$1-$i.txt"
  done
}

# The gateway: one deployment per routing mode over the same two engines; health checks often,
# so a restarted engine is back in rotation at once.
cat >"$OUT/ferrogate.toml" <<TOML
[server]
listen = "127.0.0.1:$GW_PORT"
backend_header = true
health_check_interval_secs = 1
[log]
level = "${BENCH_LOG:-warn}"
[backends.e0]
kind = "openai"
base_url = "http://127.0.0.1:${ENGINE_PORTS[0]}/v1"
[backends.e1]
kind = "openai"
base_url = "http://127.0.0.1:${ENGINE_PORTS[1]}/v1"
[routing]
scrape_interval_ms = 100
$(printf '%b' "$ROUTING_EXTRA")
TOML
for mode in prefix p2c round_robin; do
  cat >>"$OUT/ferrogate.toml" <<TOML
[deployments.route-$mode]
backends = ["e0", "e1"]
upstream_model = "smollm2"
routing = "$mode"
concurrency = $((2 * SLOTS))
queue_size = 1024
queue_max_wait_ms = 600000
TOML
done

start_engines boot
"$GATEWAY_BIN" serve --config "$OUT/ferrogate.toml" >"$OUT/ferrogate.log" 2>&1 &
GW_PID=$!
fg_wait_http "http://127.0.0.1:$GW_PORT/ready" 120 "$GW_PID" || fg_die "ferrogate did not get ready (see $OUT/ferrogate.log)"
stop_engines

# measure MODE: the workload through deployment route-MODE; one JSON line per request.
measure() {
  python3 - "$1" "http://127.0.0.1:$GW_PORT" "$TENANTS" "$2" "$REQUESTS" "$PREFIX_WORDS" "$MAX_TOKENS" "$WARMUP" <<'PY'
import http.client, json, random, sys, threading, time
from urllib.parse import urlparse

mode, base, tenants, conc, total, words, max_tokens, warmup = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:9])
url = urlparse(base)
vocab = ("account refund policy shipping invoice warranty ticket priority escalation customer region "
         "contract renewal discount billing outage latency support handbook product release security").split()

def system_prompt(t):
    rng = random.Random(1000 + t)  # each tenant's own text, from its first word on
    body = " ".join(rng.choice(vocab) for _ in range(words))
    return f"Tenant {t} (company {rng.randrange(10**6)}): you are its support assistant. Rules: {body}"

prompts = [system_prompt(t) for t in range(tenants)]
rng = random.Random(42)  # the same sequence for every mode
work = [(rng.randrange(tenants), f"Question {i}: what does rule {rng.randrange(100)} say?") for i in range(total)]
lock, results = threading.Lock(), []

def one(tenant, question):
    body = json.dumps({"model": f"route-{mode}", "stream": True, "max_tokens": max_tokens, "temperature": 0,
                       "messages": [{"role": "system", "content": prompts[tenant]}, {"role": "user", "content": question}],
                       "stream_options": {"include_usage": True}})
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=600)
    start, ttft, tokens = time.perf_counter(), None, 0
    conn.request("POST", "/v1/chat/completions", body, {"content-type": "application/json"})
    resp = conn.getresponse()
    route = resp.getheader("x-ferrogate-backend-route") or ""
    if resp.status != 200:
        return {"tenant": tenant, "error": resp.status, "route": route}
    for raw in resp:
        line = raw.decode().strip()
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        data = json.loads(line[6:])
        if any((c.get("delta") or {}).get("content") for c in data.get("choices") or []):
            ttft = ttft or time.perf_counter() - start
        if data.get("usage"):
            tokens = data["usage"].get("completion_tokens", 0)
    conn.close()
    return {"tenant": tenant, "ttft_ms": round((ttft or 0) * 1000, 1), "tokens": tokens,
            "latency_ms": round((time.perf_counter() - start) * 1000, 1), "route": route}

def worker():
    while True:
        with lock:
            if not work:
                return
            tenant, question = work.pop(0)
        r = one(tenant, question)
        with lock:
            results.append(r)

def run(jobs):
    work.extend(jobs)
    threads = [threading.Thread(target=worker) for _ in range(conc)]
    for t in threads: t.start()
    for t in threads: t.join()

if warmup:  # one unmeasured request per tenant: every prefix seen once
    todo, work[:] = list(work), []
    run([(t, "Warm-up: who are you?") for t in range(tenants)])
    failed = [r for r in results if "error" in r]
    if failed:
        sys.exit(f"warm-up failed: {failed[:3]}")
    results.clear()
    work.extend(todo)
began = time.perf_counter()
run([])
wall = time.perf_counter() - began
for r in results:
    print(json.dumps(r))
print(json.dumps({"wall_s": round(wall, 3)}))
PY
}

for conc in $CONCURRENCY; do
  for mode in $MODES; do
    fg_log "routing = $mode: $REQUESTS requests, $TENANTS tenants, concurrency $conc, $SLOTS slots per engine"
    start_engines "$mode-c$conc"
    sleep 2 # health checks and the load scrape see the fresh engines
    load_before="$(fg_load1)"
    measure "$mode" "$conc" >"$OUT/$mode-c$conc.jsonl"
    engine_metrics "$mode-c$conc"
    printf '%s %s\n' "$load_before" "$(fg_load1)" >"$OUT/$mode-c$conc.load"
    stop_engines
  done
done

python3 - "$OUT" "$MODES" "$TENANTS" "$SLOTS" "$CONCURRENCY" "$REQUESTS" "$PREFIX_WORDS" "$MAX_TOKENS" "$WARMUP" "$CACHE_RAM" <<'PY' | tee "$OUT/report.md"
import collections, json, sys
from pathlib import Path
out, modes = Path(sys.argv[1]), sys.argv[2].split()
tenants, slots, conc, total, words, max_tokens, warmup, cache_ram = sys.argv[3:11]
ram = "RAM prompt cache off" if cache_ram == "0" else f"RAM prompt cache {cache_ram} MiB"

def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else float("nan")

def counter(mode, name):
    n = 0.0
    for i in (0, 1):
        for line in (out / f"metrics-{mode}-{i}.txt").read_text().splitlines():
            if line.split(" ")[0] == f"llamacpp:{name}":
                n += float(line.split()[1])
    return int(n)

print(f"# Routing: prefix affinity vs P2C vs round robin\n")
print(f"Two llama-servers (SmolLM2-135M Q4_1, 1 thread, {slots} slots, {ram}) behind one ferrogate; "
      f"{tenants} tenants with a {words}-word system prompt each, {total} streamed requests per mode and load point, "
      f"{max_tokens} tokens per answer, "
      f"{'after one unmeasured request per tenant' if warmup == '1' else 'from cold'}.\n")
verdicts = []
for c in conc.split():
    print(f"\n## {c} clients in a closed loop\n")
    print("| routing | ok | p50 TTFT ms | p90 TTFT ms | p99 TTFT ms | tokens/s | requests/s | prompt tokens prefilled | reused from cache | route reasons | load avg before/after |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
    p90, tps = {}, {}
    for mode in modes:
        run = f"{mode}-c{c}"
        rows = [json.loads(l) for l in (out / f"{run}.jsonl").read_text().splitlines() if l.strip()]
        wall = next(r["wall_s"] for r in rows if "wall_s" in r)
        reqs = [r for r in rows if "tenant" in r]
        ok = [r for r in reqs if "error" not in r]
        ttft = [r["ttft_ms"] for r in ok]
        toks = sum(r["tokens"] for r in ok)
        reasons = collections.Counter(part.split("=", 1)[1] for r in reqs for part in r["route"].split("; ") if part.startswith("reason="))
        p90[mode], tps[mode] = pct(ttft, 90), toks / wall
        load = (out / f"{run}.load").read_text().split()
        print(f"| {mode} | {len(ok)}/{len(reqs)} | {pct(ttft, 50):.0f} | {p90[mode]:.0f} | {pct(ttft, 99):.0f} | "
              f"{toks / wall:.1f} | {len(ok) / wall:.2f} | {counter(run, 'prompt_tokens_total')} | "
              f"{counter(run, 'prompt_tokens_cached_total')} | "
              f"{', '.join(f'{k} {v}' for k, v in sorted(reasons.items()))} | {load[0]} / {load[1]} |")
    if "prefix" in p90 and p90["prefix"] > 0:
        for other in ("p2c", "round_robin"):
            if other in p90:
                print(f"\np90 TTFT, {other} / prefix: {p90[other] / p90['prefix']:.2f}x; tokens/s prefix / {other}: "
                      f"{tps['prefix'] / tps[other]:.2f}x")
        if "p2c" in p90:
            r = p90["p2c"] / p90["prefix"]
            verdicts.append(f"{c} clients: {'PASS' if r >= 2 else 'FAIL'} ({r:.2f}x)")
if verdicts:
    print(f"\nissue 22: p90 TTFT with prefix routing >= 2x better than P2C: {'; '.join(verdicts)}")
PY
