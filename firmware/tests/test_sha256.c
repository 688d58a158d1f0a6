/* SHA-256: NIST vectors, incremental == one-shot, and agreement with the
 * system's sha256sum on random buffers. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* popen, mkstemp */
#endif
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "sha256.h"

static void hex(const uint8_t d[32], char out[65]) {
  static const char x[] = "0123456789abcdef";
  for (int i = 0; i < 32; i++) {
    out[2 * i] = x[d[i] >> 4];
    out[2 * i + 1] = x[d[i] & 15];
  }
  out[64] = 0;
}

static int hash_is(const void *p, size_t n, const char *want) {
  uint8_t d[32];
  char h[65];
  sha256(p, n, d);
  hex(d, h);
  if (strcmp(h, want) != 0) {
    fprintf(stderr, "  got  %s\n  want %s\n", h, want);
    return 0;
  }
  return 1;
}

/* Small deterministic PRNG (xorshift64*) so failures reproduce. */
static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void) {
  rng ^= rng >> 12;
  rng ^= rng << 25;
  rng ^= rng >> 27;
  return (uint32_t)((rng * 0x2545f4914f6cdd1dull) >> 32);
}
static void fill_random(uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i++) p[i] = (uint8_t)rnd();
}

static void test_empty(void) {
  CHECK(hash_is("", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
}

static void test_abc(void) {
  CHECK(hash_is("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
}

static void test_448bit(void) {
  const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  CHECK_EQ(strlen(m), 56);
  CHECK(hash_is(m, strlen(m), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"));
}

static void test_896bit(void) {
  const char *m =
      "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
  CHECK(hash_is(m, strlen(m), "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"));
}

static void test_million_a(void) {
  const char *want = "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0";
  static uint8_t a[1000000];
  memset(a, 'a', sizeof a);
  CHECK(hash_is(a, sizeof a, want));
  /* Same, fed in 1000 pieces of 1000 bytes (not a multiple of 64). */
  struct sha256 s;
  uint8_t d[32];
  char h[65];
  sha256_init(&s);
  for (int i = 0; i < 1000; i++) sha256_update(&s, a, 1000);
  sha256_final(&s, d);
  hex(d, h);
  CHECK(strcmp(h, want) == 0);
}

/* Lengths around the padding boundaries (55, 56, 63, 64, 119, 120 ...) hashed
 * one-shot and byte by byte must agree. */
static void test_padding_boundaries(void) {
  uint8_t buf[200], d1[32], d2[32];
  fill_random(buf, sizeof buf);
  for (size_t n = 0; n <= sizeof buf; n++) {
    struct sha256 s;
    sha256(buf, n, d1);
    sha256_init(&s);
    for (size_t i = 0; i < n; i++) sha256_update(&s, buf + i, 1);
    sha256_final(&s, d2);
    CHECK(memcmp(d1, d2, 32) == 0);
  }
}

static void test_random_pieces(void) {
  enum { N = 300000 };
  static uint8_t buf[N];
  for (int round = 0; round < 50; round++) {
    size_t n = rnd() % N;
    fill_random(buf, n);
    uint8_t one[32], inc[32];
    sha256(buf, n, one);
    struct sha256 s;
    sha256_init(&s);
    size_t off = 0;
    while (off < n) {
      /* Mix tiny, odd, block-sized and large pieces, plus empty updates. */
      size_t k;
      switch (rnd() % 4) {
        case 0: k = rnd() % 8; break;
        case 1: k = rnd() % 130; break;
        case 2: k = 64u * (rnd() % 5); break;
        default: k = rnd() % 20000; break;
      }
      if (k > n - off) k = n - off;
      sha256_update(&s, buf + off, k);
      off += k;
    }
    sha256_final(&s, inc);
    CHECK(memcmp(one, inc, 32) == 0);
  }
}

static void test_against_sha256sum(void) {
  if (system("command -v sha256sum >/dev/null 2>&1") != 0) {
    printf("  (sha256sum not found; skipped)\n");
    return;
  }
  static const size_t sizes[] = {0, 1, 55, 56, 64, 1000, 65537, 1u << 20, 4000003};
  char path[] = "/tmp/test_sha256_XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0);
  close(fd);
  uint8_t *buf = malloc(4000003);
  CHECK(buf != NULL);
  int ok = 1;
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0] && ok; i++) {
    size_t n = sizes[i];
    fill_random(buf, n);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(buf, 1, n, f) != n) ok = 0;
    if (f) fclose(f);
    if (!ok) break;
    char cmd[128], line[256] = {0};
    snprintf(cmd, sizeof cmd, "sha256sum %s", path);
    FILE *p = popen(cmd, "r");
    if (!p || !fgets(line, sizeof line, p)) ok = 0;
    if (p) pclose(p);
    if (!ok) break;
    line[64] = 0;
    uint8_t d[32];
    char h[65];
    sha256(buf, n, d);
    hex(d, h);
    if (strcmp(h, line) != 0) {
      fprintf(stderr, "  n=%zu: ours %s sha256sum %s\n", n, h, line);
      ok = 0;
    }
  }
  free(buf);
  remove(path);
  CHECK(ok);
}

static void test_unaligned_input(void) {
  uint8_t big[4096 + 8], d0[32], d[32];
  fill_random(big, sizeof big);
  uint8_t ref[4096];
  memcpy(ref, big + 3, 4096);
  sha256(ref, 4096, d0);
  for (int off = 0; off < 8; off++) {
    memmove(big + off, ref, 4096);
    sha256(big + off, 4096, d);
    CHECK(memcmp(d, d0, 32) == 0);
  }
}

int main(void) {
  RUN(test_empty);
  RUN(test_abc);
  RUN(test_448bit);
  RUN(test_896bit);
  RUN(test_million_a);
  RUN(test_padding_boundaries);
  RUN(test_random_pieces);
  RUN(test_unaligned_input);
  RUN(test_against_sha256sum);
  return CHECK_DONE();
}
