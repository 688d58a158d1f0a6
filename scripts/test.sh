#!/usr/bin/env bash
# Runs every pifs test: the firmware's C tests, Deno's tests (with the JSDoc
# examples) and the emulated-Pi tests (deno task test:qemu, and
# test:qemu:align on images that fault on a misaligned access). Installs what is missing first. The last line is
# "N passed, N failed" over all of them; the exit code is non-zero on any
# failure. Set PIFS_TEST_FILTER to pass a --filter to deno test.
set -uo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh || { echo "setup failed"; echo "0 passed, 1 failed"; exit 1; }
DENO=.tools/bin/deno
passed=0 failed=0
log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT

count() { # adds the "N passed ... M failed" of a runner's output file to the totals
  local line
  line=$(grep -E '[0-9]+ passed.*[0-9]+ failed' "$1" | tail -1)
  if [[ -z $line ]]; then
    echo "test: $2 printed no summary: counted as one failure" >&2
    failed=$((failed + 1))
    return
  fi
  local p f
  p=$(grep -oE '[0-9]+ passed' <<<"$line" | grep -oE '[0-9]+')
  f=$(grep -oE '[0-9]+ failed' <<<"$line" | grep -oE '[0-9]+')
  passed=$((passed + p))
  failed=$((failed + f))
}

echo "== firmware: build (gcc, -Werror)"
if ! make -s -C firmware all >"$log/build" 2>&1; then
  cat "$log/build"
  echo "0 passed, 1 failed"
  exit 1
fi
for t in firmware/build/tests/test_*; do
  echo "== $t"
  "$t" >"$log/c" 2>&1
  rc=$?
  cat "$log/c"
  count "$log/c" "$t"
  if [[ $rc != 0 ]] && ! grep -qE '[1-9][0-9]* failed' "$log/c"; then failed=$((failed + 1)); fi
done

echo "== deno test"
DENO_FLAGS=(--allow-read --allow-write --allow-run --allow-env --allow-ffi --allow-sys --allow-net=127.0.0.1)
filter=()
[[ -n ${PIFS_TEST_FILTER:-} ]] && filter=(--filter "$PIFS_TEST_FILTER")
# --parallel: one test file per CPU at a time (DENO_JOBS to change). Most
# tests wait on paced lines and child processes: on two cores deno test took
# 8 minutes so, 12 one file at a time.
NO_COLOR=1 "$DENO" test "${DENO_FLAGS[@]}" --doc --parallel "${filter[@]}" 2>&1 | tee "$log/deno"
rc=${PIPESTATUS[0]}
count "$log/deno" "deno test"
if [[ $rc != 0 ]] && ! grep -qE '[1-9][0-9]* failed' "$log/deno"; then failed=$((failed + 1)); fi

echo "== deno task test:qemu: the firmware on emulated Pis (QEMU raspi3b and raspi0)"
NO_COLOR=1 "$DENO" task -q test:qemu 2>&1 | tee "$log/qemu"
rc=${PIPESTATUS[0]}
count "$log/qemu" "deno task test:qemu"
if [[ $rc != 0 ]] && ! grep -qE '[1-9][0-9]* failed' "$log/qemu"; then failed=$((failed + 1)); fi

echo "== deno task test:qemu:align: the same firmware built with alignment faults on (as silicon with its MMU off)"
NO_COLOR=1 "$DENO" task -q test:qemu:align 2>&1 | tee "$log/qemu-align"
rc=${PIPESTATUS[0]}
count "$log/qemu-align" "deno task test:qemu:align"
if [[ $rc != 0 ]] && ! grep -qE '[1-9][0-9]* failed' "$log/qemu-align"; then failed=$((failed + 1)); fi

echo "== style: deno fmt --check, deno lint, deno doc --lint mod.ts (one test each)"
for check in "fmt --check" "lint" "doc --lint mod.ts"; do
  # shellcheck disable=SC2086
  if NO_COLOR=1 "$DENO" $check >"$log/style" 2>&1; then
    passed=$((passed + 1)); echo "ok   deno $check"
  else
    failed=$((failed + 1)); echo "FAIL deno $check"; tail -20 "$log/style"
  fi
done

echo "$passed passed, $failed failed"
[[ $failed == 0 ]]
