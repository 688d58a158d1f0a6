#!/usr/bin/env bash
# The pifs demo: three emulated Pis (QEMU: two Raspberry Pi 3B and a Pi
# Zero, each booting the pifs bootloader and node firmware from its card
# image), new node firmware deployed to all three at once, a folder stored
# with 2 copies of every chunk,
# listed, read back and compared; the examples of examples/ synced (a photo
# library filed by EXIF date, an HTTP dataset, a TypeScript pipeline) and
# snapshotted; the store mounted with FUSE, read and written through the mount,
# with other pifs commands run through it;
# the host's index thrown away and rebuilt
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
SERVER_PID=
stop_server() {
  if [[ -n $SERVER_PID ]]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  SERVER_PID=
}
trap 'stop_server; ./pifs umount "$DIR/mnt" >/dev/null 2>&1 || true; ./pifs sim down --dir "$DIR" >/dev/null 2>&1 || true' EXIT

step() { printf '\n== %s\n' "$*"; }

step "pifs sim up --nodes 3 --qemu mixed   (QEMU raspi3b, raspi0, raspi3b)"
./pifs sim up --dir "$DIR" --nodes 3 --qemu mixed
./pifs status

step "pifs deploy: node firmware to all three Pis at once, through their bootloaders"
./pifs deploy firmware/build/pi3/node.img firmware/build/pi0/node.img

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

DENO="$PWD/.tools/bin/deno"

step "sample photos and a sample dataset: examples/make_samples.ts"
"$DENO" run --allow-write --allow-read examples/make_samples.ts

step "pifs sync examples/photos.yaml   (filed by EXIF date; the duplicate stored once)"
./pifs sync examples/photos.yaml
for y in $(./pifs ls /photos); do
  for m in $(./pifs ls "/photos/$y"); do
    for d in $(./pifs ls "/photos/$y$m"); do
      echo "/photos/$y$m$d"
      ./pifs ls -l "/photos/$y$m$d"
    done
  done
done

step "pifs sync examples/dataset.yaml   (served by examples/serve_dataset.ts)"
"$DENO" run --allow-net=127.0.0.1 --allow-read examples/serve_dataset.ts --port 8642 \
  >"$DIR/serve.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 300); do
  if grep -q '^serving ' "$DIR/serve.log" || ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
  sleep 0.1
done
cat "$DIR/serve.log"
grep -q '^serving ' "$DIR/serve.log" || { echo "examples/serve_dataset.ts did not start" >&2; exit 1; }
./pifs sync examples/dataset.yaml
./pifs ls -l /datasets/sample
stop_server

step "examples/custom_pipeline.ts: a source written in TypeScript, and the dataset gzipped"
"$DENO" run -A examples/custom_pipeline.ts
./pifs ls -l /lab/sensors

step "pifs sync examples/photos.yaml again: every photo unchanged, not even read, no chunk sent"
./pifs sync examples/photos.yaml

step "pifs snapshots"
./pifs snapshots

step "pifs mount: the whole store as one read-write file system"
mkdir -p "$DIR/mnt"
./pifs mount "$DIR/mnt"
ls -l "$DIR/mnt" "$DIR/mnt/sample/photos/2024"
diff -r "$DIR/sample" "$DIR/mnt/sample" && echo "identical, read through the mount"
df -h "$DIR/mnt" | tail -1
mkdir "$DIR/mnt/notes"
echo "written through the mount" > "$DIR/mnt/notes/hello.txt"
ln -s hello.txt "$DIR/mnt/notes/link"
step "while mounted, other pifs commands run inside the mount's process"
./pifs ls -l /notes
./pifs cat /notes/hello.txt
./pifs umount "$DIR/mnt"

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
