/* Writes the seed corpus of fuzz_frames (see the input format there) into
 * the directory argv[2], from the shared vectors in argv[1]
 * (tests/vectors/frames.txt) and from sessions against the fixture store.
 * Run by `bash firmware/fuzz/run.sh --seeds`; the output is committed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "proto.h"
#include "sha256.h"

static const char *outdir;
static uint8_t buf[1 << 20];
static size_t blen;

static void start(uint8_t mode, uint8_t s0, uint8_t s1, uint8_t s2, uint8_t s3) {
  buf[0] = mode;
  buf[1] = s0;
  buf[2] = s1;
  buf[3] = s2;
  buf[4] = s3;
  blen = 5;
}

static void add(const void *p, size_t n) {
  if (blen + n > sizeof buf) exit(1);
  memcpy(buf + blen, p, n);
  blen += n;
}

static void save(const char *name) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", outdir, name);
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(buf, 1, blen, f) != blen) {
    perror(path);
    exit(1);
  }
  fclose(f);
}

static size_t unhex(const char *h, uint8_t *out) {
  size_t n = 0;
  if (!strcmp(h, "-")) return 0;
  for (; h[0] && h[1]; h += 2) {
    unsigned v;
    sscanf(h, "%2x", &v);
    out[n++] = (uint8_t)v;
  }
  return n;
}

/* A request as a frame (raw modes) or a record (framed modes). */
static int framed;
static uint16_t reqid;

static void req(uint8_t op, const uint8_t *payload, uint32_t len) {
  if (framed) {
    uint8_t rec[4] = {op, 0, (uint8_t)len, (uint8_t)(len >> 8)};
    add(rec, 4);
    add(payload, len);
  } else {
    static uint8_t fr[PROTO_WIRE_SIZE(PROTO_RAW_MAX)];
    add(fr, proto_encode(fr, op, 0, ++reqid, payload, len));
  }
}

static void chunk_id(int k, uint8_t id[32]) {
  uint8_t d[2048];
  fix_chunk(k, d);
  sha256(d, fix_chunk_size(k), id);
}

static void get(const uint8_t id[32], uint32_t off, uint32_t want) {
  uint8_t p[40];
  memcpy(p, id, 32);
  st32(p + 32, off);
  st32(p + 36, want);
  req(OP_GET, p, 40);
}

/* Puts fixture chunk 3 as the first put of a freshly opened store (handle
 * 1), in two PUT_DATA frames of 500 and 200 bytes, and commits it. */
static void put_chunk3(void) {
  uint8_t id[32], p[600], data[2048];
  chunk_id(3, id);
  memcpy(p, id, 32);
  st32(p + 32, fix_chunk_size(3));
  req(OP_PUT_BEGIN, p, 36);
  fix_chunk(3, data);
  st32(p, 1);
  st32(p + 4, 0);
  memcpy(p + 8, data, 500);
  req(OP_PUT_DATA, p, 508);
  st32(p + 4, 500);
  memcpy(p + 8, data + 500, 200);
  req(OP_PUT_DATA, p, 208);
  req(OP_PUT_COMMIT, p, 4);
}

/* flags: bit 0 force, bit 1 grow the existing store to size sectors. */
static void format(uint8_t cluster, int flags, uint64_t size) {
  uint8_t p[48] = {0};
  st32(p, (uint32_t)flags);
  memset(p + 4, cluster, 16);
  st32(p + 20, FIX_NODE_ID);
  st64(p + 24, size);
  st32(p + 40, 0x0badcafe);
  req(OP_FORMAT, p, 48);
}

static void session(void) {
  uint8_t a[32], b[32], c[32], d[32], p[600];
  chunk_id(0, a);
  chunk_id(1, b);
  chunk_id(2, c);
  chunk_id(3, d);
  reqid = 0;
  req(OP_HELLO, NULL, 0);
  req(OP_INFO, NULL, 0);
  req(OP_STAT, a, 32);
  st32(p, 3);
  memcpy(p + 4, a, 32);
  memcpy(p + 36, b, 32);
  memcpy(p + 68, c, 32);
  req(OP_HAS, p, 100);
  get(a, 0, 100);
  get(b, 1000, 500);
  st32(p, 0);
  st32(p + 4, 10);
  req(OP_LIST, p, 8);
  st64(p, 0);
  st32(p + 8, 100);
  req(OP_JOURNAL_READ, p, 12);
  st64(p, 10);
  memcpy(p + 8, "abc", 3);
  req(OP_JOURNAL_APPEND, p, 11);
  put_chunk3();
  get(d, 0, 700);
  req(OP_DELETE, b, 32);
  st32(p, 0);
  st32(p + 4, 10);
  req(OP_SCRUB, p, 8);
  format(FIX_CLUSTER, 0, 0);
  req('Z', NULL, 0);
  req(OP_INFO, NULL, 0);
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: gen_corpus frames.txt outdir\n");
    return 2;
  }
  outdir = argv[2];
  FILE *f = fopen(argv[1], "r");
  if (!f) {
    perror(argv[1]);
    return 1;
  }
  static char line[8192], kind[16], name[64], f3[4096], f4[4096], f5[64], f6[4096], f7[4096];
  static uint8_t bin[4096];
  uint8_t all[16384];
  size_t nall = 0;
  while (fgets(line, sizeof line, f)) {
    if (sscanf(line, "%15s", kind) != 1 || kind[0] == '#') continue;
    if (!strcmp(kind, "frame") && sscanf(line, "%*s %63s %s %s %s %s %s", name, f3, f4, f5, f6, f7) == 6) {
      size_t n = unhex(f7, bin);
      memcpy(all + nall, bin, n);
      nall += n;
    } else if (!strcmp(kind, "stream") && sscanf(line, "%*s %63s %s", name, f3) == 2) {
      size_t n = unhex(f3, bin);
      memcpy(all + nall, bin, n);
      nall += n;
      /* The parser alone, byte by byte (1,1,1,1) or in odd pieces. */
      char fn[128];
      start(2, 1, 1, 1, 1);
      if (strstr(name, "crc") || strstr(name, "long")) buf[1] = 5, buf[2] = 3, buf[3] = 17, buf[4] = 0;
      add(bin, n);
      snprintf(fn, sizeof fn, "parser-%s", name);
      save(fn);
    }
  }
  fclose(f);
  /* Every vector in one stream, to the node. */
  start(0, 3, 1, 192, 0);
  add(all, nall);
  save("raw-vectors");

  /* A whole session as valid frames, cut in odd places. */
  framed = 0;
  start(0, 7, 13, 191, 193);
  session();
  save("raw-session");
  /* The same as records. */
  framed = 1;
  start(1, 0, 0, 0, 0);
  session();
  save("framed-session");
  start(3, 2, 0, 0, 0);
  session();
  save("parser-framed-session");

  /* Enough journal appends to fill a log half: compaction, then more. */
  start(1, 0, 0, 0, 0);
  uint64_t jl = 10;
  for (int i = 0; i < 70; i++) {
    uint8_t p[16];
    st64(p, jl);
    memset(p + 8, 'a' + i % 26, 8);
    req(OP_JOURNAL_APPEND, p, 16);
    jl += 8;
  }
  req(OP_INFO, NULL, 0);
  save("framed-compaction");

  /* FORMAT of another cluster: refused, then forced. */
  start(1, 0, 0, 0, 0);
  format(0x33, 0, 0);
  format(0x33, 1, 0);
  req(OP_INFO, NULL, 0);
  {
    uint8_t p[8] = {0};
    st32(p + 4, 10);
    req(OP_LIST, p, 8);
  }
  save("framed-format");

  /* Grow the store (FORMAT flag 2), then use the new room. */
  start(1, 0, 0, 0, 0);
  format(FIX_CLUSTER, 2, 4096);
  req(OP_INFO, NULL, 0);
  put_chunk3();
  format(FIX_CLUSTER, 2, 0);
  req(OP_INFO, NULL, 0);
  save("framed-grow");

  /* Three chunks whose ids share a slot of the chunk table (1024 slots at
   * first), the first deleted: the table's backward-shift delete. */
  start(1, 0, 0, 0, 0);
  {
    uint8_t ids[3][32], bodies[3][8], p[128];
    int have = 0;
    uint32_t slot = 0;
    for (uint32_t i = 0; have < 3 && i < 1000000; i++) {
      uint8_t body[8], id[32];
      snprintf((char *)body, sizeof body, "c%06u", (unsigned)i);
      sha256(body, 7, id);
      if (have == 0) slot = ld32(id) & 1023u;
      if ((ld32(id) & 1023u) != slot) continue;
      memcpy(ids[have], id, 32);
      memcpy(bodies[have], body, 8);
      have++;
    }
    for (int k = 0; k < 3; k++) {
      memcpy(p, ids[k], 32);
      st32(p + 32, 7);
      req(OP_PUT_BEGIN, p, 36);
      st32(p, (uint32_t)k + 1);
      st32(p + 4, 0);
      memcpy(p + 8, bodies[k], 7);
      req(OP_PUT_DATA, p, 15);
      req(OP_PUT_COMMIT, p, 4);
    }
    req(OP_DELETE, ids[0], 32);
    st32(p, 3);
    for (int k = 0; k < 3; k++) memcpy(p + 4 + 32 * k, ids[k], 32);
    req(OP_HAS, p, 100);
    memcpy(p, ids[2], 32);
    st32(p + 32, 0);
    st32(p + 36, 7);
    req(OP_GET, p, 40);
  }
  save("framed-collide");
  return 0;
}
