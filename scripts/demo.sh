#!/usr/bin/env bash
# The pifs demo: three emulated Pis (hosted nodes on ptys, paced like a real
# 921600-baud UART), a few chunks stored and read back, the cluster's status,
# and the cards checked by fsck.fat afterwards. Installs what is missing first.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
make -s -C firmware
DIR=${PIFS_DEMO_DIR:-.pifs-demo}
if [[ -e $DIR/cluster.json ]]; then ./pifs sim down --dir "$DIR" || true; rm -rf "$DIR"; fi
export PIFS_CLUSTER=$DIR
trap './pifs sim down --dir "$DIR" >/dev/null 2>&1 || true' EXIT

echo "== pifs sim up --nodes 3 --baud 921600"
./pifs sim up --dir "$DIR" --nodes 3 --baud 921600
echo "== pifs status"
./pifs status
echo "== storing 3 chunks of 256 KiB on node 1"
ids=()
for i in 1 2 3; do
  head -c 262144 /dev/urandom >"$DIR/sample$i.bin"
  ids+=("$(./pifs chunk put "$DIR/sample$i.bin" --node 1)")
  echo "  sample$i.bin -> ${ids[-1]}"
done
echo "== pifs chunk ls --node 1"
./pifs chunk ls --node 1
echo "== reading them back (hash checked by the Pi and by the host)"
for i in 1 2 3; do
  ./pifs chunk get "${ids[$((i - 1))]}" "$DIR/back$i.bin" --node 1
  cmp "$DIR/sample$i.bin" "$DIR/back$i.bin" && echo "  back$i.bin identical"
done
./pifs status
echo "== pifs sim down; fsck.fat -n on every card"
./pifs sim down --dir "$DIR"
trap - EXIT
for img in "$DIR"/node*.img; do
  dd if="$img" of="$DIR/part.img" bs=1M skip=1 conv=sparse status=none
  fsck.fat -n "$DIR/part.img" | tail -1
done
rm -f "$DIR/part.img"
echo "demo done: cards and logs are in $DIR"
