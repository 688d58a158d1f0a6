/* The store that fuzz_frames starts every run from, shared with gen_corpus.c
 * so the seeds can name its chunks: chunks A and B committed, C committed and
 * deleted, and a 10-byte journal ("hello" "world"). */
#ifndef PIFS_FUZZ_FIXTURE_H
#define PIFS_FUZZ_FIXTURE_H

#include <stdint.h>
#include <string.h>

#define FIX_CARD_SECTORS (36u * 2048u) /* 36 MiB: the smallest FAT32 with 512 B clusters is ~33 MiB */
#define FIX_STORE_SECTORS 2048u        /* 1 MiB store: log halves of 64 sectors, so compaction is near */
#define FIX_CLUSTER 0x11u              /* cluster id: 16 bytes of this */
#define FIX_NODE_ID 7u
#define FIX_NONCE 0x5eed1234u
#define FIX_JOURNAL "helloworld"

/* Chunk k's bytes: A = 100 bytes, B = 1500, C = 600, D = 700 (D is not on the
 * card: the seeds put it). */
static inline uint32_t fix_chunk_size(int k) {
  static const uint32_t sz[4] = {100, 1500, 600, 700};
  return sz[k & 3];
}

static inline void fix_chunk(int k, uint8_t *out) {
  uint32_t x = 0x9e3779b9u * (uint32_t)(k + 1);
  for (uint32_t i = 0; i < fix_chunk_size(k); i++) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    out[i] = (uint8_t)x;
  }
}

#endif
