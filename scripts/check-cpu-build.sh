#!/usr/bin/env bash
# Regression check (run by `make test`): the ferrogate binary built here runs on this machine.
#
# 1. No AMX instruction anywhere in the binary (`tilezero`, `tileloadd`, `tdpb*`, `ldtilecfg`,
#    ...): llama.cpp's AMX kernels SIGILL on the first request (scripts/llama-cc explains why),
#    so the default build leaves them out. Skipped when FERROGATE_LLAMA_AMX=1 (the opt-in).
# 2. llama.cpp was compiled for this CPU or a lower level: every instruction family its
#    archives use (AVX, FMA, AVX2, AVX-512 and its extensions, AVX-VNNI, AMX) is one this CPU
#    reports in /proc/cpuinfo. A target dir or compiler cache carried over from another machine
#    fails here instead of with SIGILL. (The Rust crates' own SIMD is chosen at run time, so
#    only llama.cpp, built with -march=native, is checked for level.)
# Before checking the binary, the script checks itself: an object compiled with AMX and
# AVX-512 must fail both checks against a CPU that lacks them, so a broken pattern cannot pass.
# And it checks the launcher on any CPU: llama.cpp's AMX kernels (ggml-cpu/amx/mmq.cpp)
# compiled with the flags `-march=native` expands to on Sapphire Rapids
# (`-march=sapphirerapids -mamx-tile -mamx-int8 -mamx-bf16`) hold AMX instructions when compiled
# directly and none through scripts/llama-cc.
#
# Usage: scripts/check-cpu-build.sh BINARY      Exit 1 with the offending instructions listed.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# objdump prints one instruction per line: "  addr:\tmnemonic operands".
mnemonics() { objdump -d --no-show-raw-insn "$@" 2>/dev/null | awk -F'\t' 'NF >= 2 { print $2 }'; }

AMX_RE='^(ldtilecfg|sttilecfg|tilerelease|tilezero|tileloaddt?1?|tilestored|tdpb[a-z0-9]*|tdpfp16ps)\b'
# instruction family (extended regex over "mnemonic operands") → the /proc/cpuinfo flag it needs
LEVELS=(
  '%ymm|^vbroadcast|^vperm2f128' avx
  '^vfn?m(add|sub)[0-9]' fma
  '^vpbroadcast[bwdq] |^vperm[dq] |^vpgather|^vpmaskmov' avx2
  '%zmm|%k[0-7]' avx512f
  '^vperm[it]?2?b |^vpmultishiftqb' avx512vbmi
  '^vpdpbusds? .*%zmm|^vpdpwssds? .*%zmm' avx512_vnni
  '^vdpbf16ps|^vcvtne2ps2bf16|^vcvtneps2bf16' avx512_bf16
  '^\{vex\} vpdpbusds?' avx_vnni
  '^tile|^ldtilecfg|^tdpb' amx_tile
)

# amx_found FILE...: prints the AMX instructions (with counts) the files contain.
amx_found() { mnemonics "$@" | grep -Eo "$AMX_RE" | sort | uniq -c || true; }

# levels_missing FLAGS FILE...: prints each flag the files' instructions need and FLAGS lacks.
levels_missing() {
  local flags=" $1 " used i
  shift
  used="$(mnemonics "$@" | sort -u)"
  for ((i = 0; i < ${#LEVELS[@]}; i += 2)); do
    if grep -Eq "${LEVELS[i]}" <<<"$used" && [[ "$flags" != *" ${LEVELS[i + 1]} "* ]]; then
      printf '%s\n' "${LEVELS[i + 1]}"
    fi
  done
}

self_test() {
  local dir
  dir="$(mktemp -d)"
  cat >"$dir/t.c" <<'C'
#include <immintrin.h>
void amx(void) { _tile_zero(1); _tile_release(); }
__m512 wide(__m512 a, __m512 b) { return _mm512_add_ps(a, b); }
C
  gcc -O2 -mamx-tile -mavx512f -c "$dir/t.c" -o "$dir/t.o" || fg_die "self-test: cannot compile the AMX probe"
  [ -n "$(amx_found "$dir/t.o")" ] || fg_die "self-test: the AMX check missed tilezero in a probe object"
  [ "$(levels_missing "sse4_2 avx avx2" "$dir/t.o" | tr '\n' ' ')" = "avx512f amx_tile " ] ||
    fg_die "self-test: the level check did not report avx512f and amx_tile for a probe object"
  launcher_test "$dir"
  rm -rf "$dir"
}

# launcher_test DIR: scripts/llama-cc strips AMX from llama.cpp's AMX kernels under SPR flags.
launcher_test() {
  local dir="$1" src flags
  src="$(find "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/llama-cpp-sys-2-*/llama.cpp -maxdepth 0 2>/dev/null | sort | tail -n 1)"
  [ -n "$src" ] || { fg_warn "llama.cpp sources not in the cargo registry: launcher test skipped"; return 0; }
  flags=(-std=c++17 -O1 -I "$src/ggml/include" -I "$src/ggml/src" -I "$src/ggml/src/ggml-cpu"
    -c "$src/ggml/src/ggml-cpu/amx/mmq.cpp" -march=sapphirerapids -mamx-tile -mamx-int8 -mamx-bf16)
  g++ "${flags[@]}" -o "$dir/direct.o" || fg_die "self-test: cannot compile llama.cpp's AMX kernels"
  FERROGATE_CCACHE=0 FERROGATE_LLAMA_AMX=0 "$FG_ROOT/scripts/llama-cc" g++ "${flags[@]}" -o "$dir/launched.o" ||
    fg_die "self-test: scripts/llama-cc failed on llama.cpp's AMX kernels"
  [ -n "$(amx_found "$dir/direct.o")" ] || fg_die "self-test: the AMX probe compiled no AMX code (flags changed?)"
  [ -z "$(amx_found "$dir/launched.o")" ] || fg_die "scripts/llama-cc let AMX instructions through under Sapphire Rapids flags"
  fg_log "self-test: llama.cpp's AMX kernels under Sapphire Rapids flags: AMX compiled directly, none through scripts/llama-cc"
}

main() {
  local bin="${1:?usage: scripts/check-cpu-build.sh BINARY}" failed=0 amx profile_dir out missing
  [ -x "$bin" ] || fg_die "$bin is not an executable (build it first)"
  [ "$(uname -m)" = x86_64 ] || { fg_log "not x86-64: nothing to check"; return 0; }
  fg_have objdump || fg_apt_install binutils
  self_test

  if [ "${FERROGATE_LLAMA_AMX:-0}" = 1 ]; then
    fg_log "FERROGATE_LLAMA_AMX=1: AMX kernels allowed (opt-in), not checked"
  else
    amx="$(amx_found "$bin")"
    if [ -n "$amx" ]; then
      printf 'error: %s contains AMX instructions (they SIGILL in llama.cpp; see scripts/llama-cc):\n%s\n' "$bin" "$amx" >&2
      failed=1
    else
      fg_log "no AMX instructions in $bin"
    fi
  fi

  # The newest llama.cpp build dir of the binary's profile holds the archives linked in.
  profile_dir="$(dirname "$bin")"
  out="$(find "$profile_dir/build" -maxdepth 2 -type d -path '*llama-cpp-sys-2-*/out' -printf '%T@ %p\n' 2>/dev/null |
    sort -rn | head -n 1 | cut -d' ' -f2-)"
  local archives=()
  [ -z "$out" ] || mapfile -t archives < <(find "$out" -name 'lib*.a' \( -name 'libggml*' -o -name 'libllama*' \))
  if [ "${#archives[@]}" -eq 0 ]; then
    fg_warn "no llama.cpp archives under $profile_dir/build: level check skipped"
  else
    missing="$(levels_missing "$(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2)" "${archives[@]}" | tr '\n' ' ')"
    if [ -n "$missing" ]; then
      printf 'error: llama.cpp in %s uses instructions this CPU lacks: %s(built on another machine? cargo clean -p llama-cpp-sys-2)\n' "$out" "$missing" >&2
      failed=1
    else
      fg_log "llama.cpp's instructions all run on this CPU ($(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'))"
    fi
  fi
  return "$failed"
}

[ "${BASH_SOURCE[0]}" != "$0" ] || main "$@"
