/* Chunk-id hash benchmark: SHA-256 (firmware/core/sha256.c) against a
 * portable BLAKE3 (bench/blake3_ref.c). See bench/hash_choice.md.
 *
 *   hash_c                     verify both, then time 4 MiB and 64 KiB buffers
 *   hash_c verify              known-answer tests only
 *   hash_c once ALG N [R]      hash N bytes (pattern i % 251) R times (default
 *                              1) with ALG (sha256 | blake3), print the digest.
 *                              For instruction counting: the instructions of
 *                              one hash = count(R=2) - count(R=1), exact,
 *                              whatever the tool also counts (startup, setup)
 *   hash_c hex ALG N           print the digest of N bytes of i % 251 (for
 *                              cross-checks against other implementations)
 *
 * Build (host):  gcc -std=c11 -O2 -Ifirmware/core bench/hash_c.c \
 *                    bench/blake3_ref.c firmware/core/sha256.c -o /tmp/hash_c
 * Needs only C11 + clock() so it also builds for bare-metal newlib targets. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sha256.h"

void blake3_ref(const void *data, size_t n, uint8_t out[32]);

typedef void hash_fn(const void *, size_t, uint8_t[32]);

static void to_hex(const uint8_t d[32], char out[65]) {
  static const char x[] = "0123456789abcdef";
  for (int i = 0; i < 32; i++) {
    out[2 * i] = x[d[i] >> 4];
    out[2 * i + 1] = x[d[i] & 15];
  }
  out[64] = 0;
}

static int kat(const char *name, hash_fn *f, const char *msg, const char *want) {
  uint8_t d[32];
  char h[65];
  f(msg, strlen(msg), d);
  to_hex(d, h);
  int ok = strcmp(h, want) == 0;
  printf("%s %-7s(\"%s\") = %s\n", ok ? "ok  " : "FAIL", name, msg, h);
  return ok;
}

static int verify(void) {
  int ok = 1;
  ok &= kat("sha256", sha256, "",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  ok &= kat("sha256", sha256, "abc",
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  ok &= kat("blake3", blake3_ref, "",
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262");
  ok &= kat("blake3", blake3_ref, "abc",
            "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85");
  return ok;
}

static uint8_t *pattern(size_t n) {
  uint8_t *b = malloc(n ? n : 1);
  if (!b) {
    fprintf(stderr, "out of memory\n");
    exit(2);
  }
  for (size_t i = 0; i < n; i++) b[i] = (uint8_t)(i % 251);
  return b;
}

/* Wall-clock seconds: C11 timespec_get where the libc has it (glibc), else
 * processor time (bare-metal newlib). */
static double now(void) {
#ifdef TIME_UTC
  struct timespec ts;
  timespec_get(&ts, TIME_UTC);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
#else
  return (double)clock() / CLOCKS_PER_SEC;
#endif
}

/* Best of 5 runs, each hashing the buffer repeatedly for >= 0.3 s. MB = 1e6 B. */
static double mbps(hash_fn *f, const uint8_t *buf, size_t n) {
  double best = 0;
  uint8_t d[32];
  for (int run = 0; run < 5; run++) {
    long reps = 0;
    double t0 = now(), t;
    do {
      f(buf, n, d);
      reps++;
      t = now() - t0;
    } while (t < 0.3);
    double r = (double)n * (double)reps / t / 1e6;
    if (r > best) best = r;
  }
  return best;
}

static hash_fn *pick(const char *alg) {
  if (strcmp(alg, "sha256") == 0) return sha256;
  if (strcmp(alg, "blake3") == 0) return blake3_ref;
  fprintf(stderr, "unknown algorithm %s (sha256 | blake3)\n", alg);
  exit(2);
}

int main(int argc, char **argv) {
  if ((argc == 4 || argc == 5) && (strcmp(argv[1], "once") == 0 || strcmp(argv[1], "hex") == 0)) {
    hash_fn *f = pick(argv[2]);
    size_t n = (size_t)strtoull(argv[3], NULL, 0);
    long reps = argc == 5 ? strtol(argv[4], NULL, 0) : 1;
    uint8_t *b = pattern(n), d[32];
    char h[65];
    for (long r = 0; r < reps; r++) f(b, n, d);
    to_hex(d, h);
    printf("%s\n", h);
    free(b);
    return 0;
  }
  if (!verify()) return 1;
  if (argc == 2 && strcmp(argv[1], "verify") == 0) return 0;

  static const size_t sizes[] = {4u << 20, 64u << 10};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    size_t n = sizes[i];
    uint8_t *b = pattern(n);
    double s = mbps(sha256, b, n);
    double k = mbps(blake3_ref, b, n);
    printf("%5lu KiB  sha256 %8.1f MB/s   blake3 %8.1f MB/s   blake3/sha256 %.2fx\n",
           (unsigned long)(n >> 10), s, k, k / s);
    free(b);
  }
  return 0;
}
