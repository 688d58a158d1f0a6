/* BLAKE3 (unkeyed hash, 32-byte output), portable C11, written from the
 * BLAKE3 specification (O'Connor, Aumasson, Neves, Wilcox-O'Hearn, 2020):
 * section 2.2 compression function, 2.4 chunks, 2.5 tree, 2.6 root/output.
 * No SIMD, no multithreading: this is the code a Pi's core would run.
 * Used only by bench/hash_c.c; not part of the node core.
 *
 *   void blake3_ref(const void *data, size_t n, uint8_t out[32]);
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

void blake3_ref(const void *data, size_t n, uint8_t out[32]);

enum {
  CHUNK_START = 1u << 0,
  CHUNK_END = 1u << 1,
  PARENT = 1u << 2,
  ROOT = 1u << 3,
};
#define BLOCK_LEN 64u
#define CHUNK_LEN 1024u
#define MAX_DEPTH 54 /* 2^54 chunks of 1 KiB = 2^64 bytes */

static const uint32_t IV[8] = {0x6a09e667u, 0xbb67ae85u, 0x3c6ef372u, 0xa54ff53au,
                               0x510e527fu, 0x9b05688cu, 0x1f83d9abu, 0x5be0cd19u};

/* Message word order in each of the 7 rounds: round 0 is the identity, each
 * next row applies the spec's permutation 2,6,3,10,7,0,4,13,1,11,12,5,9,14,15,8
 * to the previous row. */
static const uint8_t SCHEDULE[7][16] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8},
    {3, 4, 10, 12, 13, 2, 7, 14, 6, 5, 9, 0, 11, 15, 8, 1},
    {10, 7, 12, 9, 14, 3, 13, 15, 4, 0, 11, 2, 5, 8, 1, 6},
    {12, 13, 9, 11, 15, 10, 14, 8, 7, 2, 5, 3, 0, 1, 6, 4},
    {9, 14, 11, 5, 8, 12, 15, 1, 13, 3, 0, 10, 2, 6, 4, 7},
    {11, 15, 5, 0, 1, 9, 8, 6, 14, 10, 2, 12, 3, 4, 7, 13},
};

static uint32_t rotr32(uint32_t x, unsigned n) { return (x >> n) | (x << (32 - n)); }

static uint32_t load_le32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void store_le32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
  p[2] = (uint8_t)(v >> 16);
  p[3] = (uint8_t)(v >> 24);
}

#define G(a, b, c, d, x, y)        \
  do {                             \
    v[a] = v[a] + v[b] + (x);      \
    v[d] = rotr32(v[d] ^ v[a], 16); \
    v[c] = v[c] + v[d];            \
    v[b] = rotr32(v[b] ^ v[c], 12); \
    v[a] = v[a] + v[b] + (y);      \
    v[d] = rotr32(v[d] ^ v[a], 8); \
    v[c] = v[c] + v[d];            \
    v[b] = rotr32(v[b] ^ v[c], 7); \
  } while (0)

#define ROUND(r)                                                   \
  do {                                                             \
    const uint8_t *s_ = SCHEDULE[r];                               \
    G(0, 4, 8, 12, m[s_[0]], m[s_[1]]);                            \
    G(1, 5, 9, 13, m[s_[2]], m[s_[3]]);                            \
    G(2, 6, 10, 14, m[s_[4]], m[s_[5]]);                           \
    G(3, 7, 11, 15, m[s_[6]], m[s_[7]]);                           \
    G(0, 5, 10, 15, m[s_[8]], m[s_[9]]);                           \
    G(1, 6, 11, 12, m[s_[10]], m[s_[11]]);                         \
    G(2, 7, 8, 13, m[s_[12]], m[s_[13]]);                          \
    G(3, 4, 9, 14, m[s_[14]], m[s_[15]]);                          \
  } while (0)

/* The compression function with its 16-word output truncated to the 8 words
 * that are ever used here (a chaining value, or a 32-byte root hash):
 * out[i] = v[i] ^ v[i+8]. */
static void compress(const uint32_t cv[8], const uint8_t block[64], uint64_t counter,
                     uint32_t block_len, uint32_t flags, uint32_t out[8]) {
  uint32_t m[16], v[16];
  for (int i = 0; i < 16; i++) m[i] = load_le32(block + 4 * i);
  for (int i = 0; i < 8; i++) v[i] = cv[i];
  v[8] = IV[0];
  v[9] = IV[1];
  v[10] = IV[2];
  v[11] = IV[3];
  v[12] = (uint32_t)counter;
  v[13] = (uint32_t)(counter >> 32);
  v[14] = block_len;
  v[15] = flags;
  ROUND(0);
  ROUND(1);
  ROUND(2);
  ROUND(3);
  ROUND(4);
  ROUND(5);
  ROUND(6);
  for (int i = 0; i < 8; i++) out[i] = v[i] ^ v[i + 8];
}

/* Chaining value of one chunk (1..1024 bytes; 0 only for the empty input),
 * with extra_flags (ROOT) applied to its last block. */
static void chunk_cv(const uint8_t *p, size_t len, uint64_t chunk_counter, uint32_t extra_flags,
                     uint32_t cv[8]) {
  uint32_t h[8];
  memcpy(h, IV, sizeof h);
  uint32_t start = CHUNK_START;
  while (len > BLOCK_LEN) {
    compress(h, p, chunk_counter, BLOCK_LEN, start, h);
    start = 0;
    p += BLOCK_LEN;
    len -= BLOCK_LEN;
  }
  /* Last block: zero-padded, block_len is the real length. */
  uint8_t last[BLOCK_LEN];
  const uint8_t *b = p;
  if (len < BLOCK_LEN) {
    memset(last, 0, sizeof last);
    if (len) memcpy(last, p, len);
    b = last;
  }
  compress(h, b, chunk_counter, (uint32_t)len, start | CHUNK_END | extra_flags, cv);
}

static void parent_cv(const uint32_t left[8], const uint32_t right[8], uint32_t flags,
                      uint32_t cv[8]) {
  uint8_t block[BLOCK_LEN];
  for (int i = 0; i < 8; i++) {
    store_le32(block + 4 * i, left[i]);
    store_le32(block + 32 + 4 * i, right[i]);
  }
  compress(IV, block, 0, BLOCK_LEN, PARENT | flags, cv);
}

/* The tree is the one the spec defines (left subtree = largest power of two
 * of chunks that leaves at least one byte on the right). Built
 * incrementally: after chunk number t (1-based) is pushed, merge the top two
 * CVs once per trailing zero bit of t. The last chunk is held back until the
 * end, because only then is it known whether it is the root. */
void blake3_ref(const void *data, size_t n, uint8_t out[32]) {
  const uint8_t *p = data;
  uint32_t stack[MAX_DEPTH][8];
  int depth = 0;
  uint64_t chunk = 0;
  while (n > CHUNK_LEN) {
    chunk_cv(p, CHUNK_LEN, chunk, 0, stack[depth]);
    depth++;
    chunk++;
    for (uint64_t t = chunk; (t & 1) == 0; t >>= 1) {
      depth--;
      parent_cv(stack[depth - 1], stack[depth], 0, stack[depth - 1]);
    }
    p += CHUNK_LEN;
    n -= CHUNK_LEN;
  }
  uint32_t cv[8];
  if (depth == 0) {
    chunk_cv(p, n, chunk, ROOT, cv);
  } else {
    chunk_cv(p, n, chunk, 0, cv);
    /* Fold the right edge of the tree: the last merge is the root. */
    while (depth > 0) {
      depth--;
      parent_cv(stack[depth], cv, depth == 0 ? ROOT : 0, cv);
    }
  }
  for (int i = 0; i < 8; i++) store_le32(out + 4 * i, cv[i]);
}
