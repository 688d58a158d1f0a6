#!/usr/bin/env bash
# Installs what pifs needs on a Debian/Ubuntu machine that has Node.js:
# Deno (pinned, from the npm package `deno`, into .tools/) and the Debian
# packages for the firmware, the emulated Pis and the oracles. Idempotent:
# installs only what is missing. Uses sudo only when not root.
set -euo pipefail
cd "$(dirname "$0")/.."

DENO_VERSION=2.9.6
DEBIAN_PACKAGES=(make gcc libc6-dev gcc-aarch64-linux-gnu gcc-arm-none-eabi qemu-system-arm
  libnewlib-arm-none-eabi fuse3 libfuse3-dev dosfstools mtools lrzsz socat clang libclang-rt-14-dev bindfs)
# The command each package provides, to tell whether it is installed.
declare -A PROBE=([make]=make [gcc]=gcc [libc6-dev]=/usr/include/stdio.h
  [gcc-aarch64-linux-gnu]=aarch64-linux-gnu-gcc [gcc-arm-none-eabi]=arm-none-eabi-gcc [libnewlib-arm-none-eabi]=/usr/lib/arm-none-eabi/include/string.h
  [qemu-system-arm]=qemu-system-aarch64 [fuse3]=fusermount3 [libfuse3-dev]=/usr/include/fuse3/fuse_lowlevel.h
  [dosfstools]=fsck.fat [mtools]=mcopy [lrzsz]=sz [socat]=socat [clang]=clang [bindfs]=bindfs
  [libclang-rt-14-dev]='/usr/lib/llvm-14/lib/clang/*/lib/linux/libclang_rt.fuzzer-*.a')

missing=()
for p in "${DEBIAN_PACKAGES[@]}"; do
  probe=${PROBE[$p]}
  if [[ $probe == /* ]]; then compgen -G "$probe" >/dev/null || missing+=("$p")
  else command -v "$probe" >/dev/null 2>&1 || [[ -x /usr/sbin/$probe || -x /sbin/$probe ]] || missing+=("$p"); fi
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}" >&2
  SUDO=""
  [[ $(id -u) == 0 ]] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq </dev/null
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null >/dev/null
fi

if [[ ! -x .tools/node_modules/.bin/deno ]] || [[ $(.tools/node_modules/.bin/deno --version | head -1) != "deno $DENO_VERSION "* ]]; then
  command -v npm >/dev/null || { echo "setup: npm (Node.js) is required to install Deno" >&2; exit 1; }
  echo "setup: installing deno@$DENO_VERSION from npm into .tools/" >&2
  mkdir -p .tools
  npm install --silent --no-audit --no-fund --prefix .tools "deno@$DENO_VERSION" </dev/null >/dev/null
fi
mkdir -p .tools/bin
ln -sf ../node_modules/.bin/deno .tools/bin/deno
