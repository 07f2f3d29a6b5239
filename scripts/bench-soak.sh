#!/usr/bin/env bash
# Soak and scale benchmark (`make bench-soak`, issue 17 item 12): does the gateway hold thousands
# of open streams, and does its memory stay flat under hours of steady load?
#
# (a) Burst: BURST_STREAMS (2,000) SSE streams opened at once, each on its own client connection,
#     through a release ferrogate to a paced upstream (scripts/soak_sse.py upstream: 10 content
#     chunks 0.5 s apart, so every stream stays open ~5 s and all of them are open together).
#     The deployment's concurrency is raised to hold them all (the default, 64 running + 64
#     queued, refuses the rest with 503 queue_full by design). Side by side in the same run: "direct" (the client straight to the upstream: the harness
#     itself can hold them all) and "nginx" (nginx reverse-proxying the same streams, unbuffered,
#     bench/nginx/soak-proxy.conf.template: what a mature C proxy needs for the same work).
#     Reported per target: streams that ended with `data: [DONE]` and no error, peak open at
#     once, time to first byte, and the proxy's RSS (before, peak, after) and CPU seconds.
# (b) Soak: SOAK_CONCURRENCY (200) requests kept in flight through the gateway for SOAK_MINUTES
#     (30), three streams (1 s each: 10 chunks 0.1 s apart) to one non-streamed request, each on
#     a new connection. The gateway's RSS is sampled every minute and a least-squares line is
#     fitted from minute 1 on (the first minute fills pools and allocator arenas); the slope in
#     MB/min is the leak indicator (flat within noise: |slope| x minutes well below the spread).
#
# Usage: scripts/bench-soak.sh
# Env: SOAK_MINUTES (30), SOAK_CONCURRENCY (200), BURST_STREAMS (2000), FERROGATE_BIN (a prebuilt
#      binary; default target/release/ferrogate, built when missing).
# Output: a markdown report on stdout and under bench-results/soak-<timestamp>/ with the raw JSON
# and the logs' ends (gitignored).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SOAK_MINUTES="${SOAK_MINUTES:-30}"
SOAK_CONCURRENCY="${SOAK_CONCURRENCY:-200}"
BURST_STREAMS="${BURST_STREAMS:-2000}"
TOOL="$FG_ROOT/scripts/soak_sse.py"

# Every stream holds a client socket and an upstream socket in the proxy (and one in the client
# and the upstream): raise the soft limit to the hard one and check it suffices.
fg_raise_nofile "$((BURST_STREAMS * 2 + 512))" "2 x BURST_STREAMS + 512"

BIN="${FERROGATE_BIN:-$FG_ROOT/target/release/ferrogate}"
if [ -z "${FERROGATE_BIN:-}" ]; then
  fg_require_cargo
  fg_log "building the release binary (cargo build --release -p ferrogate)"
  (cd "$FG_ROOT" && cargo build --release -p ferrogate)
fi
[ -x "$BIN" ] || fg_die "no ferrogate binary at $BIN"
fg_have nginx || fg_die "nginx not found: run scripts/setup.sh --bench (installs nginx-light)"

TMP="$(mktemp -d)"
RESULTS="$FG_ROOT/bench-results/soak-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$RESULTS"
PIDS=()
cleanup() {
  local rc=$? pid
  for pid in "${PIDS[@]}"; do fg_stop_pid "$pid" 5; done
  for log in ferrogate.log nginx-error.log upstream-burst.log upstream-soak.log; do
    [ ! -f "$TMP/$log" ] || tail -n 200 "$TMP/$log" >"$RESULTS/$log"
  done
  rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT

# === the upstreams: one paced for the burst, one for the soak ===

start_upstream() { # NAME CHUNKS INTERVAL -> sets UP_PORT
  UP_PORT="$(fg_free_port)"
  python3 "$TOOL" upstream --port "$UP_PORT" --chunks "$2" --interval "$3" >"$TMP/upstream-$1.log" 2>&1 &
  PIDS+=($!)
  fg_wait_http "http://127.0.0.1:$UP_PORT/v1/models" 10 "$!" || fg_die "upstream $1 did not start"
}
start_upstream burst 10 0.5
BURST_UP="$UP_PORT"
BURST_UP_PID="${PIDS[-1]}"
start_upstream soak 10 0.1
SOAK_UP="$UP_PORT"

# === nginx, the reference proxy ===

NGINX_PORT="$(fg_free_port)"
mkdir -p "$TMP/nginx"
sed -e "s|@PREFIX@|$TMP/nginx|g; s|@PORT@|$NGINX_PORT|g; s|@UPSTREAM@|127.0.0.1:$BURST_UP|g" \
  "$FG_ROOT/bench/nginx/soak-proxy.conf.template" >"$TMP/nginx.conf"
nginx -p "$TMP/nginx" -c "$TMP/nginx.conf" -e "$TMP/nginx-error.log" >"$TMP/nginx.log" 2>&1 &
NGINX_PID=$!
PIDS+=("$NGINX_PID")
fg_wait_http "http://127.0.0.1:$NGINX_PORT/v1/models" 10 "$NGINX_PID" || fg_die "nginx did not start"
NGINX_PIDS="$NGINX_PID,$(pgrep -P "$NGINX_PID" | paste -sd, -)"

# === ferrogate ===

GW_PORT="$(fg_free_port)"
cat >"$TMP/ferrogate.toml" <<EOF
[server]
listen = "127.0.0.1:$GW_PORT"

[backends.burst]
kind = "openai"
base_url = "http://127.0.0.1:$BURST_UP/v1"

[backends.soak]
kind = "openai"
base_url = "http://127.0.0.1:$SOAK_UP/v1"

# The default concurrency of an HTTP backend (queue.backend_concurrency, 64) plus its queue (64)
# would answer the other streams 503 queue_full, by design: raise it to hold them all.
[deployments.m]
backends = ["burst"]
concurrency = $((BURST_STREAMS * 2))

[deployments.soak]
backends = ["soak"]
concurrency = $((SOAK_CONCURRENCY * 2))
EOF
"$BIN" serve --config "$TMP/ferrogate.toml" >"$TMP/ferrogate.log" 2>&1 &
GW_PID=$!
PIDS+=("$GW_PID")
fg_wait_http "http://127.0.0.1:$GW_PORT/ready" 30 "$GW_PID" || fg_die "ferrogate did not become ready (log: $TMP/ferrogate.log)"
fg_log "upstreams :$BURST_UP :$SOAK_UP, nginx :$NGINX_PORT, ferrogate :$GW_PORT (pid $GW_PID)"

# === (a) the burst, per target ===

burst() { # TARGET PORT PIDS
  fg_log "burst: $BURST_STREAMS streams through $1"
  python3 "$TOOL" burst --port "$2" --pid "$3" -n "$BURST_STREAMS" | tee "$RESULTS/burst-$1.json"
}
burst direct "$BURST_UP" "$BURST_UP_PID" >/dev/null
burst nginx "$NGINX_PORT" "$NGINX_PIDS" >/dev/null
burst ferrogate "$GW_PORT" "$GW_PID" >/dev/null

# === (b) the soak ===

fg_log "soak: $SOAK_CONCURRENCY in flight for $SOAK_MINUTES min through ferrogate (RSS each minute)"
python3 "$TOOL" soak --port "$GW_PORT" --pid "$GW_PID" --model soak --concurrency "$SOAK_CONCURRENCY" \
  --seconds "$((SOAK_MINUTES * 60))" --sample 60 >"$RESULTS/soak.json"

# === report ===

python3 - "$RESULTS" "$SOAK_MINUTES" <<'EOF' | tee "$RESULTS/report.md"
import json, os, platform, subprocess, sys
res, minutes = sys.argv[1], sys.argv[2]
cpu = next((l.split(":", 1)[1].strip() for l in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
            if l.startswith("Model name")), "?")
print(f"## Soak and scale ({os.path.basename(res)})\n")
print(f"Machine: {platform.node()}, {cpu}, {os.cpu_count()} CPUs; SOAK_MINUTES={minutes}\n")
print("| target | streams ok / sent | failed | peak open | TTFB p50 / p99 (ms) | RSS before / peak / after (MB) | CPU s |")
print("|---|---:|---|---:|---:|---:|---:|")
for t in ("direct", "nginx", "ferrogate"):
    b = json.load(open(f"{res}/burst-{t}.json"))
    print(f"| {t} | {b['ok']} / {b['streams']} | {b['failed'] or '-'} | {b['peak_open']} | "
          f"{b['ttfb_p50_ms']} / {b['ttfb_p99_ms']} | {b['rss_before_mb']} / {b['rss_peak_mb']} / {b['rss_after_mb']} | {b['cpu_s']} |")
s = json.load(open(f"{res}/soak.json"))
print(f"\nSoak through ferrogate: {s['minutes']} min at {s['concurrency']} in flight, {s['ok']} ok "
      f"({s['rps']}/s), failed {s['failed'] or 0}, gateway CPU {s['cpu_s']} s.")
print(f"RSS slope from minute 1: **{s['slope_mb_per_min']} MB/min** (all samples: {s['slope_all_mb_per_min']}); "
      f"RSS range from minute 1: {s['rss_min_mb']}–{s['rss_max_mb']} MB.\n")
print("RSS by minute (MB): " + ", ".join(f"{m:g}: {r}" for m, r in s["rss_mb"]))
EOF
