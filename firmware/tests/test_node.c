/* The protocol server under bad input: garbage between frames, truncated
 * frames, wrong CRCs, huge lengths, unknown opcodes, wrong payload sizes. The
 * node must answer each properly, resynchronise, and keep serving. */
#include "check.h"
#include "crc32c.h"
#include "node.h"
#include "ramcard.h"
#include "sha256.h"

/* Everything the node writes lands here and is parsed as the host would. */
static uint8_t out[1 << 20];
static uint32_t outlen;

static int capture(void *io, const void *buf, uint32_t n) {
  (void)io;
  if (outlen + n > sizeof out) return PIFS_EIO;
  memcpy(out + outlen, buf, n);
  outlen += n;
  return 0;
}

static struct pifs_node node;
static struct proto_parser host;
static uint16_t next_reqid = 1;

static void boot(void) {
  struct pifs_platform pl = {.board = "test",
                             .serial = 42,
                             .window = 65536,
                             .write = capture,
                             .revision = 0xa02082,
                             .mem_bytes = 1u << 30,
                             .card_init_step = -5,
                             .card_init_tries = 2,
                             .card = {.bytes = 16ull << 30,
                                      .mid = 0x03,
                                      .oid = {'S', 'D'},
                                      .pnm = {'S', 'C', '1', '6', 'G'},
                                      .prv = 0x80,
                                      .mdt = (23u << 4) | 6u,
                                      .psn = 0x1234abcdu,
                                      .speed_class = 4,
                                      .uhs_grade = 1,
                                      .bus_width = 4,
                                      .high_capacity = 1,
                                      .clock_hz = 25000000u},
                             .cpu_flags = PIFS_CPU_ICACHE | PIFS_CPU_BRANCH_PREDICT,
                             .sha256_kbps = 12345};
  node_init(&node, &bd, &pl);
  outlen = 0;
  proto_parser_init(&host);
}

static uint32_t frame(uint8_t *buf, uint8_t op, uint16_t reqid, const void *payload, uint32_t len) {
  return proto_encode(buf, op, 0, reqid, payload, len);
}

/* A frame before COBS stuffing: header, payload, CRC. */
static uint32_t raw_frame(uint8_t *raw, uint8_t op, uint16_t reqid, const void *payload, uint32_t len) {
  proto_header(raw, op, 0, reqid, len);
  memcpy(raw + PROTO_HDR, payload, len);
  st32(raw + PROTO_HDR + len, crc32c(raw + PROTO_HDR, len));
  return PROTO_HDR + len + PROTO_TRAILER;
}

/* Collects the responses the node wrote since the last call. */
struct resp {
  int n;
  uint8_t op[64];
  uint16_t reqid[64];
  int32_t status[64];
  uint32_t len[64];
  uint8_t payload[64][256];
};

static void responses(struct resp *r) {
  memset(r, 0, sizeof *r);
  uint32_t off = 0;
  while (off < outlen) {
    off += proto_feed(&host, out + off, outlen - off);
    struct proto_frame f;
    int ev;
    while ((ev = proto_next(&host, &f))) {
      if (ev != PROTO_FRAME || r->n >= 64) {
        r->n = -1000; /* the node sent something that is not a good frame */
        continue;
      }
      r->op[r->n] = f.op;
      r->reqid[r->n] = f.reqid;
      r->status[r->n] = (int32_t)ld32(f.payload);
      r->len[r->n] = f.len;
      memcpy(r->payload[r->n], f.payload, f.len < 256 ? f.len : 256);
      r->n++;
    }
  }
  outlen = 0;
}

static void send(const uint8_t *b, uint32_t n) { node_feed(&node, b, n); }

/* Sends HELLO and checks the node answers it: the node still serves. */
static int alive(void) {
  uint8_t b[64];
  uint16_t id = next_reqid++;
  send(b, frame(b, OP_HELLO, id, NULL, 0));
  struct resp r;
  responses(&r);
  return r.n == 1 && r.op[0] == OP_HELLO && r.reqid[0] == id && r.status[0] == 0;
}

static void format_node(void) {
  uint8_t p[48] = {0}, b[128];
  memset(p + 4, 0xC1, 16);
  st32(p + 20, 2);
  st64(p + 24, 8192);
  st32(p + 40, 1234);
  send(b, frame(b, OP_FORMAT, next_reqid++, p, 48));
  struct resp r;
  responses(&r);
}

static void test_unformatted_card_answers(void) {
  memcpy(card.cur, card.base, card.sectors * 512);
  boot();
  CHECK(alive());
  /* store operations report that the card holds no store */
  uint8_t b[128], id[32] = {1};
  send(b, frame(b, OP_STAT, 7, id, 32));
  struct resp r;
  responses(&r);
  CHECK_EQ(r.n, 1);
  CHECK_EQ(r.status[0], PIFS_EUNFORMATTED);
  send(b, frame(b, OP_INFO, 8, NULL, 0));
  responses(&r);
  CHECK_EQ(r.status[0], PIFS_EUNFORMATTED);
  format_node();
  send(b, frame(b, OP_INFO, 9, NULL, 0));
  responses(&r);
  CHECK_EQ(r.n, 1);
  CHECK_EQ(r.status[0], 0);
  CHECK_EQ(ld32(r.payload[0] + 20), 2); /* node id */
}

static void test_garbage_truncation_crc_length(void) {
  memcpy(card.cur, card.base, card.sectors * 512);
  boot();
  format_node();
  static uint8_t b[70000];
  struct resp r;
  /* garbage, including false magics, then a frame: answered */
  uint32_t n = 0;
  const uint8_t junk[] = {0xA7, 0x1F, 0xA7, 0x00, 0xFF, 0xA7, 0x1F, 0x48, 0x00, 0x01, 0x02};
  memcpy(b, junk, sizeof junk);
  n = sizeof junk;
  n += frame(b + n, OP_HELLO, 100, NULL, 0);
  send(b, n);
  responses(&r);
  CHECK_EQ(r.n, 1);
  CHECK_EQ(r.reqid[0], 100);
  /* random garbage of many sizes: never a crash, never a reply that is not a frame */
  uint32_t seed = 99;
  for (int t = 0; t < 200; t++) {
    uint32_t len = (seed = seed * 1103515245u + 12345u) % 3000;
    for (uint32_t i = 0; i < len; i++) b[i] = (uint8_t)((seed = seed * 1103515245u + 12345u) >> 16);
    send(b, len);
    responses(&r);
    CHECK(r.n >= 0);
  }
  /* A truncated frame costs only itself: the next frame's delimiter ends it,
   * and as its header survived, it is NAKed for a quick retransmission. */
  n = frame(b, OP_HELLO, 101, NULL, 0) - 5;
  n += frame(b + n, OP_HELLO, 111, NULL, 0);
  send(b, n);
  responses(&r);
  CHECK_EQ(r.n, 2);
  CHECK_EQ(r.op[0], OP_NAK);
  CHECK_EQ(r.reqid[0], 101);
  CHECK_EQ(r.reqid[1], 111);
  CHECK_EQ(r.status[1], 0);
  /* One byte lost in the middle of a frame: that frame is NAKed (its header
   * still holds), and the frame right after it is answered. */
  uint8_t payload[40] = {0};
  for (int i = 0; i < 32; i++) payload[i] = (uint8_t)(i + 1);
  n = frame(b, OP_STAT, 102, payload, 32);
  memmove(b + 20, b + 21, n - 21);
  n--;
  n += frame(b + n, OP_HELLO, 103, NULL, 0);
  send(b, n);
  responses(&r);
  CHECK_EQ(r.n, 2);
  CHECK_EQ(r.op[0], OP_NAK);
  CHECK_EQ(r.reqid[0], 102);
  CHECK_EQ(r.status[0], PIFS_EPROTO);
  CHECK_EQ(r.reqid[1], 103);
  CHECK_EQ(r.status[1], 0);
  /* wrong payload CRC: NAK with the request id */
  static uint8_t raw[PROTO_RAW_MAX];
  n = raw_frame(raw, OP_STAT, 104, payload, 32);
  raw[n - 1] ^= 0x01;
  send(b, proto_stuff(b, raw, n));
  responses(&r);
  CHECK_EQ(r.n, 1);
  CHECK_EQ(r.op[0], OP_NAK);
  CHECK_EQ(r.reqid[0], 104);
  CHECK_EQ(r.status[0], PIFS_EPROTO);
  CHECK(alive());
  /* wrong header CRC: silently skipped (no reqid to trust) */
  n = raw_frame(raw, OP_STAT, 105, payload, 32);
  raw[7] ^= 0x10;
  send(b, proto_stuff(b, raw, n));
  responses(&r);
  CHECK_EQ(r.n, 0);
  CHECK(alive());
  /* a huge length with a valid header: EPROTO, then business as usual */
  proto_header(raw, OP_PUT_DATA, 0, 106, 0x7FFFFFF0u);
  memset(raw + PROTO_HDR, 0xEE, 1000);
  n = proto_stuff(b, raw, PROTO_HDR + 1000);
  n += frame(b + n, OP_HELLO, 107, NULL, 0);
  send(b, n);
  responses(&r);
  CHECK_EQ(r.n, 2);
  CHECK_EQ(r.reqid[0], 106);
  CHECK_EQ(r.status[0], PIFS_EPROTO);
  CHECK_EQ(r.reqid[1], 107);
  CHECK_EQ(r.status[1], 0);
  /* more bytes than any frame holds, with a valid header: NAK, no overflow */
  proto_header(raw, OP_PUT_DATA, 0, 108, 16);
  memset(raw + PROTO_HDR, 0xEE, sizeof raw - PROTO_HDR);
  n = proto_stuff(b, raw, sizeof raw);
  b[n - 1] = 0xEE; /* no delimiter yet: 200 more bytes */
  memset(b + n, 0xEE, 200);
  n += 200;
  b[n++] = 0;
  send(b, n);
  responses(&r);
  CHECK_EQ(r.n, 1);
  CHECK_EQ(r.op[0], OP_NAK);
  CHECK_EQ(r.reqid[0], 108);
  CHECK(alive());
  /* the largest legal payload is accepted (a PUT_DATA on an unknown handle) */
  memset(b, 0, sizeof b);
  n = frame(b, OP_PUT_DATA, 109, b + 30000, PROTO_MAX_PAYLOAD);
  send(b, n);
  responses(&r);
  CHECK_EQ(r.n, 1);
  CHECK_EQ(r.status[0], PIFS_ENOENT);
  /* unknown opcode: EPROTO reply, then business as usual */
  send(b, frame(b, 0x7E, 110, NULL, 0));
  responses(&r);
  CHECK_EQ(r.n, 1);
  CHECK_EQ(r.status[0], PIFS_EPROTO);
  CHECK(alive());
  /* every opcode with a payload of wrong sizes: an error reply, never a crash */
  const uint8_t ops[] = {OP_FORMAT, OP_PUT_BEGIN, OP_PUT_DATA, OP_PUT_COMMIT, OP_GET,
                         OP_HAS,    OP_LIST,      OP_DELETE,   OP_JOURNAL_APPEND,
                         OP_JOURNAL_READ, OP_SCRUB, OP_STAT};
  const uint32_t sizes[] = {0, 1, 3, 7, 31, 33, 35, 37, 39, 41, 47, 49, 100};
  for (unsigned i = 0; i < sizeof ops; i++)
    for (unsigned k = 0; k < sizeof sizes / sizeof *sizes; k++) {
      memset(payload, 0, sizeof payload);
      uint8_t big[128] = {0};
      send(b, frame(b, ops[i], 200, big, sizes[k]));
      responses(&r);
      CHECK_EQ(r.n, 1);
      CHECK_EQ(r.op[0], ops[i]);
    }
  CHECK(alive());
  /* HAS with a count that disagrees with the length */
  uint8_t has[4 + 64] = {0};
  st32(has, 5);
  send(b, frame(b, OP_HAS, 300, has, sizeof has));
  responses(&r);
  CHECK_EQ(r.status[0], PIFS_EPROTO);
  /* frames fed one byte at a time are handled the same */
  n = frame(b, OP_HELLO, 301, NULL, 0);
  for (uint32_t i = 0; i < n; i++) send(b + i, 1);
  responses(&r);
  CHECK_EQ(r.n, 1);
  CHECK_EQ(r.reqid[0], 301);
  CHECK(node.frames_bad > 0);
}

static void test_put_get_over_frames(void) {
  memcpy(card.cur, card.base, card.sectors * 512);
  boot();
  format_node();
  static uint8_t data[50000], b[20000];
  for (uint32_t i = 0; i < sizeof data; i++) data[i] = (uint8_t)(i * 7 + 3);
  uint8_t id[32];
  sha256(data, sizeof data, id);
  uint8_t p[16384 + 64];
  struct resp r;
  memcpy(p, id, 32);
  st32(p + 32, sizeof data);
  send(b, frame(b, OP_PUT_BEGIN, 1, p, 36));
  responses(&r);
  CHECK_EQ(r.status[0], 0);
  uint32_t handle = ld32(r.payload[0] + 4);
  /* pipelined data frames, all fed at once */
  static uint8_t stream[70000];
  uint32_t sn = 0;
  for (uint32_t off = 0; off < sizeof data; off += 4096) {
    uint32_t k = sizeof data - off < 4096 ? sizeof data - off : 4096;
    st32(p, handle);
    st32(p + 4, off);
    memcpy(p + 8, data + off, k);
    sn += frame(stream + sn, OP_PUT_DATA, (uint16_t)(10 + off / 4096), p, 8 + k);
  }
  send(stream, sn);
  responses(&r);
  CHECK_EQ(r.n, 13);
  for (int i = 0; i < r.n; i++) CHECK_EQ(r.status[i], 0);
  CHECK_EQ(ld32(r.payload[12] + 4), sizeof data);
  st32(p, handle);
  send(b, frame(b, OP_PUT_COMMIT, 2, p, 4));
  responses(&r);
  CHECK_EQ(r.status[0], 0);
  /* GET a range */
  memcpy(p, id, 32);
  st32(p + 32, 1000);
  st32(p + 36, 200);
  send(b, frame(b, OP_GET, 3, p, 40));
  responses(&r);
  CHECK_EQ(r.status[0], 0);
  CHECK_EQ(ld32(r.payload[0] + 4), sizeof data);
  CHECK_EQ(r.len[0], 8 + 200);
  CHECK(!memcmp(r.payload[0] + 8, data + 1000, 200));
  /* a GET longer than a frame carries: refused */
  st32(p + 36, PROTO_MAX_DATA + 1);
  send(b, frame(b, OP_GET, 4, p, 40));
  responses(&r);
  CHECK_EQ(r.status[0], PIFS_EINVAL);
}


/* JOURNAL_TRIM over frames: the reply's start and length, INFO's
 * journal_start, JOURNAL_READ below the start, bad lengths and offsets. */
static void test_journal_trim_over_frames(void) {
  memcpy(card.cur, card.base, card.sectors * 512);
  boot();
  format_node();
  uint8_t p[512], b[1024];
  struct resp r;
  uint64_t len = 0, off[4];
  for (int i = 0; i < 4; i++) { /* entries of 10, 20, 30, 40 bytes */
    off[i] = len;
    st64(p, len);
    memset(p + 8, 'a' + i, 10u * (i + 1));
    send(b, frame(b, OP_JOURNAL_APPEND, (uint16_t)(500 + i), p, 8 + 10 * (i + 1)));
    responses(&r);
    CHECK_EQ(r.status[0], 0);
    len = ld64(r.payload[0] + 4);
  }
  CHECK_EQ(len, 100);
  /* not a record boundary */
  st64(p, off[2] + 1);
  send(b, frame(b, OP_JOURNAL_TRIM, 510, p, 8));
  responses(&r);
  CHECK_EQ(r.n, 1);
  CHECK_EQ(r.op[0], OP_JOURNAL_TRIM);
  CHECK_EQ(r.status[0], PIFS_EINVAL);
  CHECK_EQ(r.len[0], 20);
  CHECK_EQ(ld64(r.payload[0] + 4), 0);
  CHECK_EQ(ld64(r.payload[0] + 12), 100);
  /* a payload of the wrong length */
  send(b, frame(b, OP_JOURNAL_TRIM, 511, p, 4));
  responses(&r);
  CHECK_EQ(r.status[0], PIFS_EPROTO);
  /* at entry 2 */
  st64(p, off[2]);
  send(b, frame(b, OP_JOURNAL_TRIM, 512, p, 8));
  responses(&r);
  CHECK_EQ(r.status[0], 0);
  CHECK_EQ(ld64(r.payload[0] + 4), off[2]);
  CHECK_EQ(ld64(r.payload[0] + 12), 100);
  send(b, frame(b, OP_INFO, 513, NULL, 0));
  responses(&r);
  CHECK_EQ(r.len[0], 164);
  CHECK_EQ(ld64(r.payload[0] + 44), 100);  /* journal length */
  CHECK_EQ(ld32(r.payload[0] + 112), 0xa02082); /* board revision, from the platform */
  CHECK_EQ(ld32(r.payload[0] + 116), 1u << 30);  /* memory */
  CHECK_EQ(ld64(r.payload[0] + 104), 30); /* journal start */
  CHECK_EQ((int32_t)ld32(r.payload[0] + 120), -5); /* the SD start-up step, from the platform */
  CHECK_EQ(ld32(r.payload[0] + 124), 2);
  /* the card and the CPU, from the platform */
  CHECK_EQ(ld64(r.payload[0] + 128), 16ull << 30);
  CHECK_EQ(r.payload[0][136], 0x03);
  CHECK(memcmp(r.payload[0] + 137, "SDSC16G", 7) == 0);
  CHECK_EQ(r.payload[0][144], 0x80);
  CHECK_EQ(r.payload[0][145], 4);
  CHECK_EQ(ld16(r.payload[0] + 146), (23u << 4) | 6u);
  CHECK_EQ(ld32(r.payload[0] + 148), 0x1234abcdu);
  CHECK_EQ(r.payload[0][152], 1);
  CHECK_EQ(r.payload[0][153], 4);
  CHECK_EQ(r.payload[0][154], 1);
  CHECK_EQ(r.payload[0][155], PIFS_CPU_ICACHE | PIFS_CPU_BRANCH_PREDICT);
  CHECK_EQ(ld32(r.payload[0] + 156), 25000000u);
  CHECK_EQ(ld32(r.payload[0] + 160), 12345);
  /* reading below the start: ERANGE; from it: entries 2 and 3 */
  st64(p, 0);
  st32(p + 8, 100);
  send(b, frame(b, OP_JOURNAL_READ, 514, p, 12));
  responses(&r);
  CHECK_EQ(r.status[0], PIFS_ERANGE);
  st64(p, off[2]);
  send(b, frame(b, OP_JOURNAL_READ, 515, p, 12));
  responses(&r);
  CHECK_EQ(r.status[0], 0);
  CHECK_EQ(r.len[0], 12 + 70);
  CHECK(r.payload[0][12] == 'c' && r.payload[0][12 + 30] == 'd');
  /* past the end: empty at X, the next append goes there */
  st64(p, 1000);
  send(b, frame(b, OP_JOURNAL_TRIM, 516, p, 8));
  responses(&r);
  CHECK_EQ(r.status[0], 0);
  CHECK_EQ(ld64(r.payload[0] + 4), 1000);
  CHECK_EQ(ld64(r.payload[0] + 12), 1000);
  st64(p, 100);
  p[8] = 'z';
  send(b, frame(b, OP_JOURNAL_APPEND, 517, p, 9));
  responses(&r);
  CHECK_EQ(r.status[0], PIFS_ECONFLICT);
  CHECK_EQ(ld64(r.payload[0] + 4), 1000);
  st64(p, 1000);
  send(b, frame(b, OP_JOURNAL_APPEND, 518, p, 9));
  responses(&r);
  CHECK_EQ(r.status[0], 0);
  CHECK_EQ(ld64(r.payload[0] + 4), 1001);
  /* the node restarts: the same journal */
  node_close(&node);
  boot();
  send(b, frame(b, OP_INFO, 519, NULL, 0));
  responses(&r);
  CHECK_EQ(ld64(r.payload[0] + 44), 1001);
  CHECK_EQ(ld64(r.payload[0] + 104), 1000);
  CHECK(alive());
}

int main(void) {
  if (make_card()) {
    printf("0 passed, 1 failed\n");
    return 1;
  }
  RUN(test_unformatted_card_answers);
  RUN(test_garbage_truncation_crc_length);
  RUN(test_put_get_over_frames);
  RUN(test_journal_trim_over_frames);
  return CHECK_DONE();
}
