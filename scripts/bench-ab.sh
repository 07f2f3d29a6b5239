#!/usr/bin/env bash
# A/B of two gateway builds (`make bench-ab A=… B=…`): on a shared 2-vCPU machine one
# bench-overhead run after another can differ by 2x in the direct figures alone (neighbours'
# load comes and goes), so comparing a change against the build before it needs both measured in
# the same minutes. Here both gateways run at once, pinned to the same CPU, behind the same nginx
# upstream (bench/nginx/upstream.conf.template), and ROUNDS rounds alternate between them: per
# round and build, oha for DURATION seconds at each concurrency (RPS, p50, p99, and the gateway's CPU
# time per request from /proc/<pid>/stat), then a TTFT probe (sequential streamed requests on one
# keep-alive connection, time to the first content frame: bench/ttft_probe.py, as bench-overhead). The summary gives each build's median
# over the rounds and B/A.
#
# Usage: scripts/bench-ab.sh A_BIN B_BIN
# Env: ROUNDS (4), DURATION (3), CONCURRENCY ("1 64"), MODE (sse | json; default sse),
#      API (openai: POST /v1/chat/completions; ollama: the same conversation as POST /api/chat,
#      answered whole or as NDJSON; default openai), TTFT_N (600 per round; OpenAI streams only),
#      OHA (default ~/.cache/ferrogate/tools/bin/oha).
# Output: a markdown report on stdout and under bench-results/ab-<timestamp>/ (gitignored).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ "$#" -eq 2 ] || fg_die "usage: scripts/bench-ab.sh A_BIN B_BIN (two ferrogate binaries)"
BINS=("$1" "$2")
for b in "${BINS[@]}"; do [ -x "$b" ] || fg_die "not an executable: $b"; done
ROUNDS="${ROUNDS:-4}"
DURATION="${DURATION:-3}"
read -r -a CONCURRENCY <<<"${CONCURRENCY:-1 64}"
MODE="${MODE:-sse}"
TTFT_N="${TTFT_N:-600}"
OHA="${OHA:-$FG_TOOLS/bin/oha}"
[ -x "$OHA" ] || fg_die "oha not found at $OHA: run scripts/setup.sh --bench"
fg_have nginx || fg_die "nginx not found: run scripts/setup.sh --bench"
case "$MODE" in sse | json) ;; *) fg_die "MODE must be sse or json" ;; esac
API="${API:-openai}"
case "$API" in openai) ENDPOINT=/v1/chat/completions ;; ollama) ENDPOINT=/api/chat ;; *) fg_die "API must be openai or ollama" ;; esac
PIN_SERVER=() PIN_LOAD=()
if fg_have taskset && [ "$(nproc)" -ge 2 ]; then PIN_SERVER=(taskset -c 0) PIN_LOAD=(taskset -c 1-$(($(nproc) - 1))); fi

OUT="$FG_ROOT/bench-results/ab-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT/nginx"
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do fg_stop_pid "$pid"; done
}
trap cleanup EXIT

NGINX_PORT="$(fg_free_port)"
PROXY_PORT="$(fg_free_port)"
sed -e "s|@PREFIX@|$OUT/nginx|g; s|@PROXY_PORT@|$PROXY_PORT|g; s|@PORT@|$NGINX_PORT|g; s|@WORKERS@|1|g" \
  "$FG_ROOT/bench/nginx/upstream.conf.template" >"$OUT/nginx.conf"
"${PIN_SERVER[@]}" nginx -p "$OUT/nginx" -c "$OUT/nginx.conf" -e "$OUT/nginx/error.log" >"$OUT/nginx.log" 2>&1 &
PIDS+=("$!")
fg_wait_http "http://127.0.0.1:$NGINX_PORT/json/v1/models" 10 "${PIDS[0]}" || fg_die "nginx did not start"

PORTS=()
for i in 0 1; do
  port="$(fg_free_port)"
  PORTS+=("$port")
  cat >"$OUT/gateway-$i.toml" <<TOML
[server]
listen = "127.0.0.1:$port"
[log]
level = "warn"
[backends.fast]
kind = "openai"
base_url = "http://127.0.0.1:$NGINX_PORT/$MODE/v1"
# 64 running and a queue with room for every client of the largest concurrency (c=512
# included): the default queue of 64 would answer the rest 503 queue_full by design, and 1,024
# running at once overflow tokio's run queue (as in scripts/bench-overhead.sh).
[deployments.fast]
backends = ["fast"]
concurrency = 64
queue_size = 1024
TOML
  "${PIN_SERVER[@]}" "${BINS[$i]}" serve --config "$OUT/gateway-$i.toml" >"$OUT/gateway-$i.log" 2>&1 &
  PIDS+=("$!")
  fg_wait_http "http://127.0.0.1:$port/ready" 30 "$!" || fg_die "gateway ${BINS[$i]} did not get ready"
done
GW_PIDS=("${PIDS[1]}" "${PIDS[2]}")
STREAM=false
[ "$MODE" = json ] || STREAM=true
BODY="{\"model\":\"fast\",\"stream\":$STREAM,\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}]}"
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

fg_log "A = ${BINS[0]}, B = ${BINS[1]}: $ROUNDS rounds of ${CONCURRENCY[*]} x ${DURATION}s ($API $MODE), load $(fg_load1)"
for round in $(seq 1 "$ROUNDS"); do
  # Odd rounds measure A first, even rounds B first: whichever runs second inherits the first's
  # closing connections (measured in a fixed order, two configurations of one binary came out
  # ~6% further apart than with the order swapped).
  order=(0 1)
  [ $((round % 2)) -eq 1 ] || order=(1 0)
  for i in "${order[@]}"; do
    port="${PORTS[$i]}"
    for c in "${CONCURRENCY[@]}"; do
      before="$(cpu_ticks "${GW_PIDS[$i]}")"
      "${PIN_LOAD[@]}" "$OHA" -z "${DURATION}s" -c "$c" --no-tui --output-format json -m POST \
        -H 'content-type: application/json' -d "$BODY" "http://127.0.0.1:$port$ENDPOINT" \
        >"$OUT/oha-$round-$i-c$c.json"
      echo "$before $(cpu_ticks "${GW_PIDS[$i]}") $(getconf CLK_TCK)" >"$OUT/cpu-$round-$i-c$c.txt"
    done
    if [ "$MODE" = sse ] && [ "$API" = openai ]; then
      "${PIN_LOAD[@]}" python3 "$FG_ROOT/bench/ttft_probe.py" "$port" /v1/chat/completions "$TTFT_N" "$BODY" \
        >"$OUT/ttft-$round-$i.json" || fg_die "TTFT probe failed against ${BINS[$i]}"
    fi
  done
done

python3 - "$OUT" "$ROUNDS" "$API $MODE" "${BINS[0]}" "${BINS[1]}" "${CONCURRENCY[@]}" <<'PY' | tee "$OUT/report.md"
import datetime, json, os, statistics, subprocess, sys
out, rounds, mode, a, b, concs = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6:]
cpu = next((l.split(":", 1)[1].strip() for l in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
            if l.startswith("Model name")), "?")
med = statistics.median
def oha(r, i, c):
    d = json.load(open(f"{out}/oha-{r}-{i}-c{c}.json"))
    n = sum(d["statusCodeDistribution"].values())
    ok = d["statusCodeDistribution"].get("200", 0)
    t0, t1, hz = map(float, open(f"{out}/cpu-{r}-{i}-c{c}.txt").read().split())
    p = d["latencyPercentiles"]
    return d["summary"]["requestsPerSec"], p["p50"] * 1e6, (t1 - t0) / hz * 1e6 / max(n, 1), n - ok, p["p99"] * 1e6
date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
print(f"## A/B ({os.path.basename(out)}): {mode}, {rounds} rounds, both gateways pinned to one CPU\n")
print(f"Machine: {os.cpu_count()} CPUs, {cpu}; {date}\n\nA: `{a}`  \nB: `{b}`\n")
print("| measure | A (median) | B (median) | B / A | A per round | B per round |")
print("|---|---:|---:|---:|---|---|")
for c in concs:
    rows = {i: [oha(r, i, c) for r in range(1, rounds + 1)] for i in (0, 1)}
    for k, name in ((0, f"RPS, c={c}"), (1, f"p50 µs, c={c}"), (4, f"p99 µs, c={c}"), (2, f"gateway CPU µs per request, c={c}")):
        va, vb = [x[k] for x in rows[0]], [x[k] for x in rows[1]]
        print(f"| {name} | {med(va):,.0f} | {med(vb):,.0f} | {med(vb) / med(va):.2f} | "
              f"{' '.join(f'{x:,.0f}' for x in va)} | {' '.join(f'{x:,.0f}' for x in vb)} |")
    errs = [x[3] for i in (0, 1) for x in rows[i]]
    if any(errs):
        print(f"| non-200 answers, c={c} | {sum(x[3] for x in rows[0])} | {sum(x[3] for x in rows[1])} | | | |")
if mode == "openai sse":
    for k in ("p50_us", "p90_us"):
        va = [json.load(open(f"{out}/ttft-{r}-0.json"))[k] for r in range(1, rounds + 1)]
        vb = [json.load(open(f"{out}/ttft-{r}-1.json"))[k] for r in range(1, rounds + 1)]
        print(f"| TTFT {k[:3]} µs (probe) | {med(va):,.0f} | {med(vb):,.0f} | {med(vb) / med(va):.2f} | "
              f"{' '.join(f'{x:,.0f}' for x in va)} | {' '.join(f'{x:,.0f}' for x in vb)} |")
PY
