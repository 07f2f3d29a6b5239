#!/usr/bin/env bash
# Many concurrent streams (`make bench-streams`, issue 23 item 5): can the gateway hold STREAMS
# (10,000) SSE streams open at once to a slow-dripping upstream, deliver every frame on time, and
# stay within 200 MB of RSS?
#
# The upstream and the clients are one Rust tool, fg-streams (crates/ferrogate-testkit, built in
# release): `upstream` drips FRAMES content chunks per stream, one every PACE_MS, then usage and
# `data: [DONE]`; `clients` opens STREAMS streams, one connection each, started evenly over
# RAMP_MS (so the accept queue is not what is measured), reads every frame and times the gaps.
# Up to four targets (TARGETS), one after the other, against the same upstream:
#   direct     the clients straight to the upstream: the harness's own ceiling on this machine;
#   nginx      nginx reverse-proxying them, unbuffered (bench/nginx/soak-proxy.conf.template, its
#              connection limits raised for STREAMS): what a mature C proxy needs for the work;
#   ferrogate  a release gateway with an `openai` backend, the deployment's `concurrency` and
#              `server.max_connections` raised to hold every stream: an upstream connection per
#              stream (HTTP/1.1, as inference engines speak it);
#   ferrogate-h2  the same gateway, its backend set to `http2_prior_knowledge = true`: every
#              stream is an HTTP/2 stream of one upstream connection (h2c).
# Reported per target: streams ok, failures by reason, peak open at once, the longest pause
# between two frames (overall and p99 of the per-stream longest), time to first byte, the proxy's
# RSS (before, peak, after) and CPU seconds. Then the stream ceiling and PASS/FAIL for "every
# frame delivered, no gap over 10x the pace" and "RSS <= 200 MB" (a target set at 10,000 streams)
# for each gateway target.
#
# Usage: scripts/bench-streams.sh
# Env: STREAMS (10000), PACE_MS (100), FRAMES (50: each stream lives ~FRAMES x PACE_MS),
#      RAMP_MS (2000), TARGETS ("direct nginx ferrogate ferrogate-h2"), FERROGATE_BIN (a prebuilt gateway; default target/release/ferrogate, built
#      when missing), FG_STREAMS_BIN (a prebuilt fg-streams; default: built in release here).
# Each process holds a socket per stream and a proxy with an upstream connection per stream two,
# so the open-files limit must cover 2 x STREAMS + 1024 (STREAMS + 1024 when TARGETS names only
# direct and ferrogate-h2): the script raises it to the hard limit (as root, past it) or stops.
# Output: a markdown report on stdout and under bench-results/streams-<timestamp>/ with the raw
# JSON, the gateway's config and the logs' ends (gitignored).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

STREAMS="${STREAMS:-10000}"
PACE_MS="${PACE_MS:-100}"
FRAMES="${FRAMES:-50}"
RAMP_MS="${RAMP_MS:-2000}"
TARGETS="${TARGETS:-direct nginx ferrogate ferrogate-h2}"
TARGET_DIR="${CARGO_TARGET_DIR:-$FG_ROOT/target}"
wants() { [[ " $TARGETS " == *" $1 "* ]]; }
for t in $TARGETS; do
  case "$t" in direct | nginx | ferrogate | ferrogate-h2) ;; *) fg_die "unknown target '$t' in TARGETS" ;; esac
done

# === open files ===

if wants nginx || wants ferrogate; then
  need=$((STREAMS * 2 + 1024))
  fg_raise_nofile "$need" "2 x STREAMS + 1024 for nginx and ferrogate; TARGETS=\"direct ferrogate-h2\" needs half"
else
  need=$((STREAMS + 1024))
  fg_raise_nofile "$need" "STREAMS + 1024"
fi

# === binaries ===

TOOL="${FG_STREAMS_BIN:-$TARGET_DIR/release/fg-streams}"
if [ -z "${FG_STREAMS_BIN:-}" ]; then
  fg_require_cargo
  fg_log "building the load tool (cargo build --release -p ferrogate-testkit --bin fg-streams)"
  (cd "$FG_ROOT" && cargo build --release -p ferrogate-testkit --bin fg-streams)
fi
[ -x "$TOOL" ] || fg_die "no fg-streams binary at $TOOL"
BIN="${FERROGATE_BIN:-$TARGET_DIR/release/ferrogate}"
if [ -z "${FERROGATE_BIN:-}" ] && [ ! -x "$BIN" ]; then
  fg_require_cargo
  fg_log "building the release gateway (cargo build --release -p ferrogate)"
  (cd "$FG_ROOT" && cargo build --release -p ferrogate)
fi
[ -x "$BIN" ] || fg_die "no ferrogate binary at $BIN"
! wants nginx || fg_have nginx || fg_die "nginx not found: run scripts/setup.sh --bench (installs nginx-light)"

TMP="$(mktemp -d)"
RESULTS="$FG_ROOT/bench-results/streams-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$RESULTS"
PIDS=()
cleanup() {
  local rc=$? pid log
  for pid in "${PIDS[@]}"; do fg_stop_pid "$pid" 5; done
  for log in ferrogate.log ferrogate-h2.log nginx-error.log upstream.log; do
    [ ! -f "$TMP/$log" ] || tail -n 200 "$TMP/$log" >"$RESULTS/$log"
  done
  # A failed run's cause is in the gateway's first warnings, long before the log's tail.
  for log in ferrogate.log ferrogate-h2.log; do
    [ ! -f "$TMP/$log" ] || grep -m 20 -E '"level":"(WARN|ERROR)"' "$TMP/$log" >"$RESULTS/${log%.log}-warnings.log" || true
  done
  rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT

# === the upstream ===

UP_PORT="$(fg_free_port)"
"$TOOL" upstream --port "$UP_PORT" --frames "$FRAMES" --interval-ms "$PACE_MS" >"$TMP/upstream.log" 2>&1 &
UP_PID=$!
PIDS+=("$UP_PID")
fg_wait_http "http://127.0.0.1:$UP_PORT/v1/models" 10 "$UP_PID" || fg_die "the upstream did not start"

# === nginx, the reference proxy (the soak's config, its connection limits raised) ===

start_nginx() {
NGINX_PORT="$(fg_free_port)"
mkdir -p "$TMP/nginx"
sed -e "s|@PREFIX@|$TMP/nginx|g; s|@PORT@|$NGINX_PORT|g; s|@UPSTREAM@|127.0.0.1:$UP_PORT|g" \
  -e "s|worker_connections [0-9]*;|worker_connections $((STREAMS * 2 + 512));|" \
  -e "s|worker_rlimit_nofile [0-9]*;|worker_rlimit_nofile $need;|" \
  "$FG_ROOT/bench/nginx/soak-proxy.conf.template" >"$TMP/nginx.conf"
grep -q "worker_connections $((STREAMS * 2 + 512));" "$TMP/nginx.conf" ||
  fg_die "bench/nginx/soak-proxy.conf.template no longer has a worker_connections line to raise"
nginx -p "$TMP/nginx" -c "$TMP/nginx.conf" -e "$TMP/nginx-error.log" >"$TMP/nginx.log" 2>&1 &
NGINX_PID=$!
PIDS+=("$NGINX_PID")
fg_wait_http "http://127.0.0.1:$NGINX_PORT/v1/models" 10 "$NGINX_PID" || fg_die "nginx did not start"
NGINX_PIDS="$NGINX_PID,$(pgrep -P "$NGINX_PID" | paste -sd, -)"
}

# === ferrogate ===

start_gateway() { # NAME EXTRA-BACKEND-LINE: sets GW_PORT, GW_PID
GW_PORT="$(fg_free_port)"
cat >"$TMP/$1.toml" <<EOF
[server]
listen = "127.0.0.1:$GW_PORT"
# Every stream holds one client connection: the default cap (10,000) would refuse the last ones.
max_connections = $((STREAMS + 1024))

[backends.drip]
kind = "openai"
base_url = "http://127.0.0.1:$UP_PORT/v1"
$2

# An HTTP backend's default concurrency (queue.backend_concurrency, 64, plus a queue of 64)
# would answer the rest 503 queue_full, by design: hold every stream.
[deployments.m]
backends = ["drip"]
concurrency = $STREAMS
EOF
cp "$TMP/$1.toml" "$RESULTS/$1.toml"
"$BIN" serve --config "$TMP/$1.toml" >"$TMP/$1.log" 2>&1 &
GW_PID=$!
PIDS+=("$GW_PID")
fg_wait_http "http://127.0.0.1:$GW_PORT/ready" 30 "$GW_PID" || fg_die "$1 did not become ready (log: $TMP/$1.log)"
fg_log "$1 :$GW_PORT (pid $GW_PID)"
}
fg_log "upstream :$UP_PORT; $STREAMS streams x $FRAMES frames every $PACE_MS ms; targets: $TARGETS"

# === the runs ===

TIMEOUT_S=$(((FRAMES + 1) * PACE_MS / 1000 + RAMP_MS / 1000 + 60))
run() { # TARGET PORT PIDS
  fg_log "$STREAMS streams through $1 (load $(fg_load1))"
  "$TOOL" clients --url "http://127.0.0.1:$2" --model m -n "$STREAMS" --ramp-ms "$RAMP_MS" \
    --frames "$FRAMES" --pid "$3" --timeout-s "$TIMEOUT_S" >"$RESULTS/$1.json"
  fg_load1 >"$RESULTS/$1.load"
}
# Each proxy starts just before its run and stops after it, so none holds memory or CPU in
# another's run.
for t in $TARGETS; do
  case "$t" in
    direct) run direct "$UP_PORT" "$UP_PID" ;;
    nginx)
      start_nginx
      run nginx "$NGINX_PORT" "$NGINX_PIDS"
      fg_stop_pid "$NGINX_PID" 5
      ;;
    ferrogate)
      start_gateway ferrogate ""
      run ferrogate "$GW_PORT" "$GW_PID"
      fg_stop_pid "$GW_PID" 10
      ;;
    ferrogate-h2)
      start_gateway ferrogate-h2 "http2_prior_knowledge = true   # every stream on one h2c connection"
      run ferrogate-h2 "$GW_PORT" "$GW_PID"
      fg_stop_pid "$GW_PID" 10
      ;;
  esac
done

# === report ===

COMMAND="STREAMS=$STREAMS PACE_MS=$PACE_MS FRAMES=$FRAMES RAMP_MS=$RAMP_MS TARGETS=\"$TARGETS\" scripts/bench-streams.sh (ferrogate: $BIN)"
# shellcheck disable=SC2086 # one argument per target
python3 - "$RESULTS" "$STREAMS" "$PACE_MS" "$COMMAND" $TARGETS <<'EOF' | tee "$RESULTS/report.md"
import datetime, json, os, platform, subprocess, sys
res, streams, pace, command = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
cpu = next((l.split(":", 1)[1].strip() for l in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
            if l.startswith("Model name")), "?")
runs = {t: json.load(open(f"{res}/{t}.json")) for t in sys.argv[5:]}
load = {t: open(f"{res}/{t}.load").read().strip() for t in runs}
date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
print(f"## Many streams ({os.path.basename(res)})\n")
print(f"Machine: {platform.node()}, {cpu}, {os.cpu_count()} CPUs; {date}")
print(f"Command: `{command}`\n")
print("| target | ok / streams | failed | peak open | frames received / expected | max gap (ms) | p99 gap (ms) "
      "| TTFB p50 / p99 (ms) | RSS before / peak / after (MB) | CPU s | client CPU s | load after |")
print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for t, r in runs.items():
    failed = ", ".join(f"{n} {k}" for k, n in r["failed"].items()) or "-"
    print(f"| {t} | {r['ok']} / {r['streams']} | {failed} | {r['peak_open']} | {r['frames_received']} / {r['frames_expected']} "
          f"| {r['max_gap_ms']} | {r['p99_gap_ms']} | {r['ttfb_p50_ms']} / {r['ttfb_p99_ms']} "
          f"| {r['rss_before_mb']} / {r['rss_peak_mb']} / {r['rss_after_mb']} | {r['cpu_s']} | {r['client_cpu_s']} | {load[t]} |")

def delivered(r):  # every stream ok, every frame, no gap over 10x the pace
    return r["ok"] == r["streams"] and r["frames_received"] == r["frames_expected"] and (r["max_gap_ms"] or 0) <= 10 * pace

print()
direct = runs.get("direct")
if direct and not delivered(direct):
    print(f"**The harness itself did not hold {streams} streams** (direct: {direct['ok']} ok, max gap {direct['max_gap_ms']} ms):"
          " the proxies' figures below that ceiling are the machine's, not theirs.\n")
at = "" if streams == 10000 else f" (measured at {streams} streams; the target is set at 10,000)"
for name in (t for t in runs if t.startswith("ferrogate")):
    gw = runs[name]
    if delivered(gw):
        print(f"Stream ceiling ({name}): held {gw['peak_open']} streams open at once and delivered every frame of all {streams}:"
              f" the ceiling is at least {streams} on this machine (the run did not reach it).")
    else:
        print(f"Stream ceiling ({name}): delivered {gw['ok']} of {streams} streams whole (peak open {gw['peak_open']},"
              f" max gap {gw['max_gap_ms']} ms): below {streams} at a {pace} ms pace on this machine.")
    print(f"- {name}: every frame delivered, no gap > 10x pace ({10 * pace} ms): **{'PASS' if delivered(gw) else 'FAIL'}**{at}")
    print(f"- {name}: gateway RSS <= 200 MB: peak {gw['rss_peak_mb']} MB: **{'PASS' if gw['rss_peak_mb'] <= 200 else 'FAIL'}**{at}")
    print()
EOF
