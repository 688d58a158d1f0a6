#!/usr/bin/env bash
# The pifs demo: three emulated Pis (hosted nodes on ptys, each paced like a
# real 921600-baud UART), a folder stored with 2 copies of every chunk,
# listed, read back and compared, the host's index thrown away and rebuilt
# from the cards, one Pi stopped and the files still read back, and every
# card checked by fsck.fat. Installs what is missing first.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
make -s -C firmware
DIR=${PIFS_DEMO_DIR:-.pifs-demo}
if [[ -e $DIR/cluster.json ]]; then ./pifs sim down --dir "$DIR" >/dev/null 2>&1 || true; fi
rm -rf "$DIR"
export PIFS_CLUSTER=$DIR
trap './pifs sim down --dir "$DIR" >/dev/null 2>&1 || true' EXIT

step() { printf '\n== %s\n' "$*"; }

step "pifs sim up --nodes 3 --baud 921600"
./pifs sim up --dir "$DIR" --nodes 3 --baud 921600
./pifs status

step "a sample folder: photos and a dataset (one file twice: deduplicated)"
mkdir -p "$DIR/sample/photos/2024" "$DIR/sample/dataset"
for i in 1 2 3; do head -c 150000 /dev/urandom >"$DIR/sample/photos/2024/IMG_000$i.JPG"; done
head -c 400000 /dev/urandom >"$DIR/sample/dataset/part-0.bin"
cp "$DIR/sample/dataset/part-0.bin" "$DIR/sample/dataset/part-0-copy.bin"
echo "pifs demo dataset" >"$DIR/sample/dataset/README.txt"

step "pifs put sample /sample   (2 copies of every chunk, on distinct Pis)"
./pifs put "$DIR/sample" /
./pifs ls -l /sample/dataset
./pifs cat /sample/dataset/README.txt
./pifs du /

step "pifs get /sample back, and diff -r against the original"
./pifs get /sample "$DIR/restored"
diff -r "$DIR/sample" "$DIR/restored" && echo "identical"

step "the host loses its index: pifs attach rebuilds it from the cards alone"
rm -f "$DIR"/index.db*
./pifs attach
./pifs ls -l /sample/photos/2024

step "a Pi dies (kill -9 of node 1): every file still reads back from the other copy"
kill -9 "$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['nodes'][1]['pid'])" "$DIR/cluster.json")"
sleep 0.2
./pifs status || true
rm -rf "$DIR/restored2"
./pifs get /sample "$DIR/restored2" 2>/dev/null
diff -r "$DIR/sample" "$DIR/restored2" && echo "identical, with node 1 down"

step "pifs sim down; fsck.fat -n on every card"
./pifs sim down --dir "$DIR"
trap - EXIT
for img in "$DIR"/node*.img; do
  dd if="$img" of="$DIR/part.img" bs=1M skip=1 conv=sparse status=none
  printf '%s: ' "$img"
  fsck.fat -n "$DIR/part.img" | tail -1
done
rm -f "$DIR/part.img"
echo
echo "demo done: cards, logs and cluster.json are in $DIR"
