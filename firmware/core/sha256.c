/* SHA-256 per FIPS 180-4 (sections 4.1.2, 4.2.2, 5.1.1, 5.3.3, 6.2). */
#include "sha256.h"

#include <string.h>

/* 4.2.2: first 32 bits of the fractional parts of the cube roots of the
 * first 64 primes. */
static const uint32_t K[64] = {
    0x428a2f98u, 0x71374491u, 0xb5c0fbcfu, 0xe9b5dba5u, 0x3956c25bu, 0x59f111f1u,
    0x923f82a4u, 0xab1c5ed5u, 0xd807aa98u, 0x12835b01u, 0x243185beu, 0x550c7dc3u,
    0x72be5d74u, 0x80deb1feu, 0x9bdc06a7u, 0xc19bf174u, 0xe49b69c1u, 0xefbe4786u,
    0x0fc19dc6u, 0x240ca1ccu, 0x2de92c6fu, 0x4a7484aau, 0x5cb0a9dcu, 0x76f988dau,
    0x983e5152u, 0xa831c66du, 0xb00327c8u, 0xbf597fc7u, 0xc6e00bf3u, 0xd5a79147u,
    0x06ca6351u, 0x14292967u, 0x27b70a85u, 0x2e1b2138u, 0x4d2c6dfcu, 0x53380d13u,
    0x650a7354u, 0x766a0abbu, 0x81c2c92eu, 0x92722c85u, 0xa2bfe8a1u, 0xa81a664bu,
    0xc24b8b70u, 0xc76c51a3u, 0xd192e819u, 0xd6990624u, 0xf40e3585u, 0x106aa070u,
    0x19a4c116u, 0x1e376c08u, 0x2748774cu, 0x34b0bcb5u, 0x391c0cb3u, 0x4ed8aa4au,
    0x5b9cca4fu, 0x682e6ff3u, 0x748f82eeu, 0x78a5636fu, 0x84c87814u, 0x8cc70208u,
    0x90befffau, 0xa4506cebu, 0xbef9a3f7u, 0xc67178f2u,
};

#define ROTR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))
/* 4.1.2, in equivalent forms that need fewer instructions:
 *   Ch(x,y,z)  = (x & y) ^ (~x & z)            = z ^ (x & (y ^ z))
 *   Maj(x,y,z) = (x & y) ^ (x & z) ^ (y & z)   = (x & y) | (z & (x | y))
 *   Σ0(x) = ROTR2 ^ ROTR13 ^ ROTR22 = ROTR2(x ^ ROTR11(x ^ ROTR9(x)))
 *   Σ1(x) = ROTR6 ^ ROTR11 ^ ROTR25 = ROTR6(x ^ ROTR5(x ^ ROTR14(x))) */
#define CH(x, y, z) ((z) ^ ((x) & ((y) ^ (z))))
#define MAJ(x, y, z) (((x) & (y)) | ((z) & ((x) | (y))))
#define BSIG0(x) ROTR((x) ^ ROTR((x) ^ ROTR(x, 9), 11), 2)
#define BSIG1(x) ROTR((x) ^ ROTR((x) ^ ROTR(x, 14), 5), 6)
#define SSIG0(x) (ROTR(x, 7) ^ ROTR(x, 18) ^ ((x) >> 3))
#define SSIG1(x) (ROTR(x, 17) ^ ROTR(x, 19) ^ ((x) >> 10))

static uint32_t load_be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static void store_be32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}

/* One round of 6.2.2 step 3, with the working variables renamed instead of
 * shifted: round i uses (a..h) rotated right by i mod 8. */
#define ROUND(a, b, c, d, e, f, g, h, i)                   \
  do {                                                     \
    uint32_t t1_ = (h) + BSIG1(e) + CH(e, f, g) + K[i] + W[(i) & 15]; \
    uint32_t t2_ = BSIG0(a) + MAJ(a, b, c);                \
    (d) += t1_;                                            \
    (h) = t1_ + t2_;                                       \
  } while (0)

/* Message schedule (6.2.2 step 1) kept in a 16-word ring: for t >= 16,
 * W[t] = SSIG1(W[t-2]) + W[t-7] + SSIG0(W[t-15]) + W[t-16]. */
#define SCHED(i)                                                        \
  (W[(i) & 15] += SSIG1(W[((i) - 2) & 15]) + W[((i) - 7) & 15] +        \
                  SSIG0(W[((i) - 15) & 15]))

#define SCHED8(i)                                                \
  do {                                                           \
    SCHED((i) + 0); SCHED((i) + 1); SCHED((i) + 2); SCHED((i) + 3); \
    SCHED((i) + 4); SCHED((i) + 5); SCHED((i) + 6); SCHED((i) + 7); \
  } while (0)

#define ROUND8(i)                       \
  do {                                  \
    ROUND(a, b, c, d, e, f, g, h, (i) + 0); \
    ROUND(h, a, b, c, d, e, f, g, (i) + 1); \
    ROUND(g, h, a, b, c, d, e, f, (i) + 2); \
    ROUND(f, g, h, a, b, c, d, e, (i) + 3); \
    ROUND(e, f, g, h, a, b, c, d, (i) + 4); \
    ROUND(d, e, f, g, h, a, b, c, (i) + 5); \
    ROUND(c, d, e, f, g, h, a, b, (i) + 6); \
    ROUND(b, c, d, e, f, g, h, a, (i) + 7); \
  } while (0)

/* Processes nblocks whole 64-byte blocks starting at p (any alignment). */
static void compress(uint32_t H[8], const uint8_t *p, size_t nblocks) {
  uint32_t W[16];
  while (nblocks--) {
    uint32_t a = H[0], b = H[1], c = H[2], d = H[3];
    uint32_t e = H[4], f = H[5], g = H[6], h = H[7];
    for (int t = 0; t < 16; t++) W[t] = load_be32(p + 4 * t);
    /* Fully unrolled so every W index and K index is a constant. */
    ROUND8(0);
    ROUND8(8);
    SCHED8(16);
    ROUND8(16);
    SCHED8(24);
    ROUND8(24);
    SCHED8(32);
    ROUND8(32);
    SCHED8(40);
    ROUND8(40);
    SCHED8(48);
    ROUND8(48);
    SCHED8(56);
    ROUND8(56);
    H[0] += a; H[1] += b; H[2] += c; H[3] += d;
    H[4] += e; H[5] += f; H[6] += g; H[7] += h;
    p += 64;
  }
}

void sha256_init(struct sha256 *s) {
  /* 5.3.3: first 32 bits of the fractional parts of the square roots of the
   * first 8 primes. */
  s->h[0] = 0x6a09e667u;
  s->h[1] = 0xbb67ae85u;
  s->h[2] = 0x3c6ef372u;
  s->h[3] = 0xa54ff53au;
  s->h[4] = 0x510e527fu;
  s->h[5] = 0x9b05688cu;
  s->h[6] = 0x1f83d9abu;
  s->h[7] = 0x5be0cd19u;
  s->len = 0;
  s->fill = 0;
}

void sha256_update(struct sha256 *s, const void *data, size_t n) {
  const uint8_t *p = data;
  if (n == 0) return;
  s->len += n;
  if (s->fill) {
    size_t take = 64u - s->fill;
    if (take > n) take = n;
    memcpy(s->buf + s->fill, p, take);
    s->fill += (uint32_t)take;
    p += take;
    n -= take;
    if (s->fill < 64u) return;
    compress(s->h, s->buf, 1);
    s->fill = 0;
  }
  if (n >= 64u) {
    /* Whole blocks straight from the caller's buffer. */
    size_t nb = n / 64u;
    compress(s->h, p, nb);
    p += nb * 64u;
    n -= nb * 64u;
  }
  if (n) {
    memcpy(s->buf, p, n);
    s->fill = (uint32_t)n;
  }
}

void sha256_final(struct sha256 *s, uint8_t out[32]) {
  /* 5.1.1: append 0x80, zeros to 56 mod 64, then the bit length as a
   * 64-bit big-endian integer. */
  uint64_t bits = s->len * 8u;
  uint32_t f = s->fill;
  s->buf[f++] = 0x80;
  if (f > 56u) {
    memset(s->buf + f, 0, 64u - f);
    compress(s->h, s->buf, 1);
    f = 0;
  }
  memset(s->buf + f, 0, 56u - f);
  store_be32(s->buf + 56, (uint32_t)(bits >> 32));
  store_be32(s->buf + 60, (uint32_t)bits);
  compress(s->h, s->buf, 1);
  for (int i = 0; i < 8; i++) store_be32(out + 4 * i, s->h[i]);
  memset(s, 0, sizeof *s);
}

void sha256(const void *data, size_t n, uint8_t out[32]) {
  struct sha256 s;
  sha256_init(&s);
  sha256_update(&s, data, n);
  sha256_final(&s, out);
}
