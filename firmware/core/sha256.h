/* SHA-256 (FIPS 180-4), portable C11: no platform code, no allocation.
 *
 *   struct sha256 s; sha256_init(&s); sha256_update(&s, p, n) ...;
 *   sha256_final(&s, out);      or in one go: sha256(p, n, out);
 *
 * sha256_final leaves the state wiped; call sha256_init again to reuse it. */
#ifndef PIFS_SHA256_H
#define PIFS_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_BLOCK 64u
#define SHA256_DIGEST 32u

struct sha256 {
  uint32_t h[8];   /* chaining value */
  uint64_t len;    /* total bytes fed so far */
  uint8_t buf[64]; /* partial block */
  uint32_t fill;   /* bytes used in buf (0..63) */
};

void sha256_init(struct sha256 *s);
void sha256_update(struct sha256 *s, const void *data, size_t n);
void sha256_final(struct sha256 *s, uint8_t out[32]);
void sha256(const void *data, size_t n, uint8_t out[32]);

#endif
