#!/usr/bin/env bash
# Instructions per proxied request, counted: the gateway against nginx's own reverse proxy, both
# under valgrind's callgrind, in one run (`make bench-instructions`).
#
# Why: a time-based A/B on a shared 2-vCPU machine moves ±10% between minutes, so a change of a
# few per cent cannot be told from the host's drift. Callgrind counts the instructions a process
# executes in user space — the same count for the same binary and input within ~1.5% (timers and
# once-a-second work land in one run or another), whatever else the machine does — so a change's
# effect on the per-request work shows, read before and after in one run (BENCH_BASE_BIN). What it
# does not see: the kernel (syscalls, task switches; 30–45% of the gateway's CPU in perf) and what an instruction
# costs (cache misses, branch mispredictions). It ranks user-space work; time stays bench-ab's.
#
# What runs: nginx (bench/nginx/upstream.conf.template, one process, master off) serves the static
# OpenAI answers and, on a second port, reverse-proxies them; the gateway is configured as the
# bare gateway of bench-overhead.sh (two OpenAI-compatible backends on that nginx, metrics and
# dashboard off, the default access log on). Both run under callgrind with counting off until a
# warm-up of every kind of request is done. Then, one kind at a time, N sequential requests
# (oha -c 1) with counting on and a dump after each (`callgrind_control -d`, which resets):
#   gateway JSON, gateway streamed        -> the gateway's dump (and nginx's, as its upstream)
#   nginx direct, nginx proxy (each mode) -> nginx's dumps; nginx's proxy cost per request is the
#                                            proxy dump minus the direct one (one process serves
#                                            both ends, as in bench-overhead)
#
# The binary: callgrind (valgrind 3.19) stops at the first AVX-512 instruction, and the default
# build is compiled for the build machine's CPU (target-cpu=native: std too, under LTO), so this
# builds the same release profile for x86-64-v2 in its own target dir (target/x86-64-v2; a cold
# build takes as long as `make build-release`). FERROGATE_BIN overrides (any binary valgrind runs;
# BENCH_BASE_BIN adds a second gateway, counted the same way, for before/after).
#
# Usage: scripts/bench-instructions.sh [--annotate]
#   --annotate   also write callgrind_annotate's inclusive top functions per gateway dump
# Env: N (requests per kind, 2000), WARMUP (200), FERROGATE_BIN, BENCH_BASE_BIN, RESULTS_DIR.
# Output: a markdown table on stdout, the dumps and the report under bench-results/instructions-*/.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

N="${N:-2000}"
WARMUP="${WARMUP:-200}"
ANNOTATE=0
for arg in "$@"; do
  case "$arg" in
    --annotate) ANNOTATE=1 ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
      exit 0
      ;;
    *) fg_die "unknown option $arg (--help)" ;;
  esac
done

OHA="${OHA:-$FG_TOOLS/bin/oha}"
[ -x "$OHA" ] || fg_die "oha not found at $OHA: run scripts/setup.sh --bench"
fg_have valgrind || fg_die "valgrind not found (apt-get install valgrind)"
fg_have callgrind_control || fg_die "callgrind_control not found (Debian's valgrind package has it)"
fg_have nginx || fg_die "nginx not found: run scripts/setup.sh --bench"

if [ -z "${FERROGATE_BIN:-}" ]; then
  fg_require_cargo
  fg_log "building ferrogate (release, x86-64-v2) in target/x86-64-v2"
  (cd "$FG_ROOT" && CARGO_TARGET_DIR="$FG_ROOT/target/x86-64-v2" RUSTFLAGS='-C target-cpu=x86-64-v2' \
    cargo build --release -p ferrogate)
  FERROGATE_BIN="$FG_ROOT/target/x86-64-v2/release/ferrogate"
fi
[ -x "$FERROGATE_BIN" ] || fg_die "no binary at $FERROGATE_BIN"

RESULTS="${RESULTS_DIR:-$FG_ROOT/bench-results/instructions-$(date -u +%Y%m%d-%H%M%S)}"
mkdir -p "$RESULTS"
TMP="$(mktemp -d)"
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do fg_stop_pid "$pid" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT

NGINX_PORT="$(fg_free_port)"
PROXY_PORT="$(fg_free_port)"
[ "$PROXY_PORT" != "$NGINX_PORT" ] || PROXY_PORT="$(fg_free_port)"
mkdir -p "$TMP/nginx"
sed -e "s|@PREFIX@|$TMP/nginx|g; s|@PROXY_PORT@|$PROXY_PORT|g; s|@PORT@|$NGINX_PORT|g; s|@WORKERS@|1|g" \
  -e 's|^master_process on;|master_process off;|' \
  "$FG_ROOT/bench/nginx/upstream.conf.template" >"$TMP/nginx.conf"

# valgrind_start NAME [PIN...] -- CMD...: runs CMD under callgrind, counting off, dumps into
# $RESULTS, valgrind itself started by PIN (taskset: valgrind follows no exec); sets VG_PID to the
# process's pid (taskset and valgrind exec in place: the pid is the program's).
valgrind_start() {
  local name="$1" pin=()
  shift
  while [ "$1" != -- ]; do
    pin+=("$1")
    shift
  done
  shift
  "${pin[@]}" valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$RESULTS/$name.%p.out" \
    "$@" >"$TMP/$name.log" 2>&1 &
  VG_PID=$!
  PIDS+=("$VG_PID")
}

valgrind_start nginx -- nginx -p "$TMP/nginx" -c "$TMP/nginx.conf" -e "$TMP/nginx/error.log"
NGINX_PID="$VG_PID"
fg_wait_http "http://127.0.0.1:$PROXY_PORT/json/v1/models" 60 "$NGINX_PID" ||
  { cat "$TMP/nginx.log" >&2; fg_die "nginx did not come up under valgrind"; }

# gateway_start NAME BIN: the bare gateway of bench-overhead.sh under callgrind; sets GW_PORT/GW_PID.
gateway_start() {
  local name="$1" bin="$2"
  GW_PORT="$(fg_free_port)"
  {
    printf '[server]\nlisten = "127.0.0.1:%s"\n\n' "$GW_PORT"
    fg_bench_backends "$NGINX_PORT"
    printf '[metrics]\nenabled = false\n\n[dashboard]\nenabled = false\n'
  } >"$TMP/$name.toml"
  # One CPU, as bench-overhead pins it: the same (current-thread) scheduler is counted.
  valgrind_start "$name" taskset -c 0 -- "$bin" serve --config "$TMP/$name.toml"
  GW_PID="$VG_PID"
  fg_wait_http "http://127.0.0.1:$GW_PORT/health" 120 "$GW_PID" ||
    { tail -n 30 "$TMP/$name.log" >&2; fg_die "$name did not come up under valgrind"; }
}

body() {
  if [ "$1" = json ]; then
    printf '{"model":"fast","messages":[{"role":"user","content":"Say hello."}],"max_tokens":16}'
  else
    printf '{"model":"fast-sse","messages":[{"role":"user","content":"Say hello."}],"max_tokens":16,"stream":true,"stream_options":{"include_usage":true}}'
  fi
}

# send URL MODE COUNT: COUNT sequential requests; every answer must be a 200.
send() {
  local url="$1" mode="$2" count="$3" out="$TMP/oha.json"
  "$OHA" --no-tui --output-format json -n "$count" -c 1 -m POST -H 'content-type: application/json' \
    -d "$(body "$mode")" "$url" >"$out" || fg_die "oha failed against $url"
  python3 - "$out" "$count" "$url" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
codes = r.get("statusCodeDistribution", {})
if codes != {"200": int(sys.argv[2])}:
    sys.exit(f"{sys.argv[3]}: expected {sys.argv[2]} answers 200, got {codes}")
PY
}

# dump PID LABEL: writes the counts since the last dump (callgrind_control -d resets them).
dump() { callgrind_control -d "$2" "$1" >/dev/null 2>&1; }

# The dump whose trigger is LABEL, for process PID: callgrind numbers dumps .1, .2, ...
dump_file() { grep -lx "desc: Trigger: dump $2" "$RESULTS/$1".*.out.* 2>/dev/null | head -n 1; }
totals() { awk '/^totals:/ { print $2; exit }' "$1"; }

gw_url() { printf 'http://127.0.0.1:%s/v1/chat/completions' "$1"; }
ng_url() { printf 'http://127.0.0.1:%s/%s/v1/chat/completions' "$1" "$2"; }

GATEWAYS=(gateway)
BINS=("$FERROGATE_BIN")
if [ -n "${BENCH_BASE_BIN:-}" ]; then
  GATEWAYS+=(base)
  BINS+=("$BENCH_BASE_BIN")
fi

for i in "${!GATEWAYS[@]}"; do
  name="${GATEWAYS[$i]}"
  gateway_start "$name" "${BINS[$i]}"
  fg_log "$name under callgrind on 127.0.0.1:$GW_PORT (pid $GW_PID); warming up"
  send "$(gw_url "$GW_PORT")" json "$WARMUP"
  send "$(gw_url "$GW_PORT")" sse "$WARMUP"
  callgrind_control -i on "$GW_PID" >/dev/null 2>&1
  callgrind_control -i on "$NGINX_PID" >/dev/null 2>&1
  for mode in json sse; do
    dump "$NGINX_PID" "before-$name-$mode"
    dump "$GW_PID" "before-$name-$mode"
    fg_log "$name $mode: $N requests"
    send "$(gw_url "$GW_PORT")" "$mode" "$N"
    dump "$GW_PID" "$name-$mode"
    dump "$NGINX_PID" "upstream-$name-$mode"
  done
  fg_stop_pid "$GW_PID" || true
done

for mode in json sse; do
  send "$(ng_url "$NGINX_PORT" "$mode")" "$mode" "$WARMUP"
  send "$(ng_url "$PROXY_PORT" "$mode")" "$mode" "$WARMUP"
  for target in direct proxy; do
    port="$NGINX_PORT"
    [ "$target" = direct ] || port="$PROXY_PORT"
    dump "$NGINX_PID" "before-nginx-$target-$mode"
    fg_log "nginx $target $mode: $N requests"
    send "$(ng_url "$port" "$mode")" "$mode" "$N"
    dump "$NGINX_PID" "nginx-$target-$mode"
  done
done

# The report: instructions per request, and the gateway's against nginx's proxy.
{
  printf '# Instructions per request (callgrind, user space only)\n\n'
  printf '%s, %s, %s requests per kind after %s of warm-up, sequential (c=1).\n\n' \
    "$(date -u '+%Y-%m-%d %H:%M UTC')" "$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -n 1)" "$N" "$WARMUP"
  printf '| process | JSON | streamed |\n|---|---:|---:|\n'
  per() { python3 -c "print(f'{$1 / $N:,.0f}')"; }
  declare -A IR
  for mode in json sse; do
    for target in direct proxy; do
      f="$(dump_file nginx "nginx-$target-$mode")"
      IR["nginx-$target-$mode"]="$(totals "$f")"
    done
    IR["nginx-proxy-only-$mode"]=$((IR["nginx-proxy-$mode"] - IR["nginx-direct-$mode"]))
    for name in "${GATEWAYS[@]}"; do
      IR["$name-$mode"]="$(totals "$(dump_file "$name" "$name-$mode")")"
    done
  done
  printf '| nginx serving the answer (direct) | %s | %s |\n' "$(per "${IR[nginx-direct-json]}")" "$(per "${IR[nginx-direct-sse]}")"
  printf '| nginx reverse proxy (proxy run − direct run) | %s | %s |\n' \
    "$(per "${IR[nginx-proxy-only-json]}")" "$(per "${IR[nginx-proxy-only-sse]}")"
  for name in "${GATEWAYS[@]}"; do
    printf '| ferrogate (%s: %s) | %s | %s |\n' "$name" "$( [ "$name" = gateway ] && printf '%s' "$FERROGATE_BIN" || printf '%s' "$BENCH_BASE_BIN")" \
      "$(per "${IR[$name-json]}")" "$(per "${IR[$name-sse]}")"
  done
  printf '\n| ratio | JSON | streamed |\n|---|---:|---:|\n'
  for name in "${GATEWAYS[@]}"; do
    printf '| %s / nginx reverse proxy | %s× | %s× |\n' "$name" \
      "$(python3 -c "print(f'{${IR[$name-json]} / ${IR[nginx-proxy-only-json]}:.2f}')")" \
      "$(python3 -c "print(f'{${IR[$name-sse]} / ${IR[nginx-proxy-only-sse]}:.2f}')")"
  done
  if [ -n "${BENCH_BASE_BIN:-}" ]; then
    printf '| gateway / base | %s | %s |\n' \
      "$(python3 -c "print(f'{${IR[gateway-json]} / ${IR[base-json]}:.3f}')")" \
      "$(python3 -c "print(f'{${IR[gateway-sse]} / ${IR[base-sse]}:.3f}')")"
  fi
} | tee "$RESULTS/report.md"

if [ "$ANNOTATE" = 1 ]; then
  for name in "${GATEWAYS[@]}"; do
    for mode in json sse; do
      callgrind_annotate --inclusive=yes --threshold=99 "$(dump_file "$name" "$name-$mode")" 2>/dev/null |
        head -n 80 >"$RESULTS/annotate-$name-$mode.txt" || true
    done
  done
  fg_log "top functions (inclusive) in $RESULTS/annotate-*.txt"
fi
fg_log "results in ${RESULTS#"$FG_ROOT"/}/"
