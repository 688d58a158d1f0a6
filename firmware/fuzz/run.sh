#!/usr/bin/env bash
# Builds and runs the libFuzzer targets of the node core (deno task fuzz).
#
#   bash firmware/fuzz/run.sh            build both targets, run each for
#                                        FUZZ_SECONDS (default 60) seconds
#   bash firmware/fuzz/run.sh --seeds    regenerate the committed seed corpora
#   bash firmware/fuzz/run.sh --build    build only
#   bash firmware/fuzz/run.sh TARGET     run one target (fuzz_frames, fuzz_mount, fuzz_spec)
#
# fuzz_spec is the host's job-spec loader (tests/fuzz_spec.ts, under Deno):
# hostile job files generated from the examples, a new seed each round.
#
# Each target runs on a copy of its seed corpus in a temp dir (the committed
# corpus never grows), with -timeout=5 (a run that long is a hang). A target
# passes when it ends with no crash, hang, leak or broken invariant; the last
# line is "N passed, N failed" and the exit code is non-zero on any failure.
# A crash's input is kept in firmware/build/fuzz/artifacts/.
#
# Needs clang with its sanitizer and libFuzzer runtimes (Debian package
# libclang-rt-14-dev, or libclang-rt-dev for the default clang) and mkfs.fat
# (dosfstools).
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1
ROOT=$(pwd)
FW=$ROOT/firmware
OUT=$FW/build/fuzz
SECONDS_PER=${FUZZ_SECONDS:-60}
CC=${FUZZ_CC:-clang}
C_TARGETS=(fuzz_frames fuzz_mount)
TARGETS=("${C_TARGETS[@]}" fuzz_spec)

mkdir -p "$OUT"

build() {
  local t=$1
  "$CC" -std=c11 -D_DEFAULT_SOURCE -g -O1 -fno-omit-frame-pointer \
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -Wall -Wextra -I"$FW/core" -I"$FW/fuzz" \
    "$FW/fuzz/$t.c" "$FW"/core/*.c -o "$OUT/$t"
}

for t in "${C_TARGETS[@]}"; do
  if ! build "$t" 2>"$OUT/$t.build.log"; then
    cat "$OUT/$t.build.log" >&2
    if grep -q "libclang_rt\|cannot find.*fuzzer" "$OUT/$t.build.log"; then
      echo "run.sh: the libFuzzer/sanitizer runtime is missing: apt-get install libclang-rt-14-dev" >&2
    fi
    echo "0 passed, ${#TARGETS[@]} failed"
    exit 1
  fi
done

if [ "${1:-}" = "--build" ]; then
  echo "built: ${C_TARGETS[*]} in $OUT"
  exit 0
fi

if [ "${1:-}" = "--seeds" ]; then
  "$CC" -std=c11 -D_DEFAULT_SOURCE -O1 -I"$FW/core" -I"$FW/fuzz" "$FW/fuzz/gen_corpus.c" "$FW"/core/*.c \
    -o "$OUT/gen_corpus" || exit 1
  rm -rf "$FW/fuzz/corpus/frames" "$FW/fuzz/corpus/mount"
  mkdir -p "$FW/fuzz/corpus/frames" "$FW/fuzz/corpus/mount"
  "$OUT/gen_corpus" "$ROOT/tests/vectors/frames.txt" "$FW/fuzz/corpus/frames" || exit 1
  PIFS_FUZZ_MOUNT_SEEDS="$FW/fuzz/corpus/mount" "$OUT/fuzz_mount" -runs=0 >/dev/null 2>&1 || exit 1
  for d in frames mount; do
    echo "corpus/$d: $(ls "$FW/fuzz/corpus/$d" | wc -l) files, $(du -sb "$FW/fuzz/corpus/$d" | cut -f1) bytes"
  done
  exit 0
fi

if [ $# -gt 0 ]; then TARGETS=("$@"); fi

TMP=$(mktemp -d /tmp/pifs-fuzz.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$OUT/artifacts"

passed=0
failed=0
for t in "${TARGETS[@]}"; do
  if [ "$t" = fuzz_spec ]; then
    echo "== $t (${SECONDS_PER}s)"
    if "$ROOT/.tools/bin/deno" run -A "$ROOT/tests/fuzz_spec.ts" "$SECONDS_PER" >"$OUT/$t.log" 2>&1; then
      grep -E '^   runs:' "$OUT/$t.log"
      echo "ok   $t"
      passed=$((passed + 1))
    else
      grep -E '^   runs:|^FAIL' "$OUT/$t.log" | head -8
      echo "FAIL $t (log: $OUT/$t.log)"
      failed=$((failed + 1))
    fi
    continue
  fi
  case $t in
    fuzz_frames) corpus=frames; extra=(-max_len=65536) ;;
    fuzz_mount) corpus=mount; extra=() ;;
    *) echo "unknown target $t" >&2; failed=$((failed + 1)); continue ;;
  esac
  mkdir -p "$TMP/$t"
  cp "$FW/fuzz/corpus/$corpus"/* "$TMP/$t/" 2>/dev/null
  log=$OUT/$t.log
  echo "== $t (${SECONDS_PER}s)"
  ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0} \
  UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
    "$OUT/$t" "$TMP/$t" -max_total_time="$SECONDS_PER" -timeout=5 -rss_limit_mb=4096 \
      -print_final_stats=1 -artifact_prefix="$OUT/artifacts/$t-" "${extra[@]}" >"$log" 2>&1
  rc=$?
  # The last status line: "#N DONE cov: C ft: F corp: ... exec/s: E rss: R".
  last=$(grep -E '^#[0-9]+' "$log" | tail -1)
  runs=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}')
  eps=$(grep -E '^stat::average_exec_per_sec' "$log" | awk '{print $2}')
  cov=$(echo "$last" | sed -n 's/.*cov: \([0-9]*\).*/\1/p')
  ft=$(echo "$last" | sed -n 's/.*ft: \([0-9]*\).*/\1/p')
  echo "   runs: ${runs:-?}  exec/s: ${eps:-?}  cov: ${cov:-?}  ft: ${ft:-?}"
  if [ $rc -eq 0 ] && ! grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:|INVARIANT BROKEN' "$log"; then
    echo "ok   $t"
    passed=$((passed + 1))
  else
    echo "FAIL $t (exit $rc; log: $log)"
    grep -E 'INVARIANT BROKEN|ERROR:|runtime error:|SUMMARY:|Test unit written to' "$log" | head -8 | sed 's/^/   /'
    failed=$((failed + 1))
  fi
done
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
