/* The C codec against the shared protocol vectors (tests/vectors/frames.txt),
 * which the TypeScript codec passes too. */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "crc32c.h"
#include "proto.h"

static FILE *open_vectors(void) {
  const char *paths[] = {"tests/vectors/frames.txt", "../tests/vectors/frames.txt"};
  for (unsigned i = 0; i < sizeof paths / sizeof *paths; i++) {
    FILE *f = fopen(paths[i], "r");
    if (f) return f;
  }
  return NULL;
}

static uint32_t unhex(const char *s, uint8_t *out, uint32_t max) {
  if (!strcmp(s, "-")) return 0;
  uint32_t n = 0;
  while (s[0] && s[1] && n < max) {
    unsigned v;
    sscanf(s, "%2x", &v);
    out[n++] = (uint8_t)v;
    s += 2;
  }
  return n;
}

static int crc_lines, frame_lines, stream_lines;

static void test_vectors(void) {
  FILE *f = open_vectors();
  CHECK(f != NULL);
  static char line[65536];
  static uint8_t a[32768], b[32768], enc[32768];
  while (fgets(line, sizeof line, f)) {
    char kind[16], name[64], x[32768], y[32768], ev[1024];
    if (line[0] == '#' || sscanf(line, "%15s", kind) != 1) continue;
    if (!strcmp(kind, "crc")) {
      unsigned want;
      CHECK(sscanf(line, "%*s %s %x", x, &want) == 2);
      CHECK_EQ(crc32c(x, strlen(x)), want);
      crc_lines++;
    } else if (!strcmp(kind, "frame")) {
      unsigned op, flags, reqid;
      CHECK(sscanf(line, "%*s %63s %x %x %u %s %s", name, &op, &flags, &reqid, x, y) == 6);
      uint32_t pl = unhex(x, a, sizeof a), fl = unhex(y, b, sizeof b);
      uint32_t n = proto_encode(enc, (uint8_t)op, (uint8_t)flags, (uint16_t)reqid, a, pl);
      CHECK_EQ(n, fl);
      CHECK(memcmp(enc, b, n) == 0);
      /* and it parses back */
      static struct proto_parser p;
      proto_parser_init(&p);
      CHECK_EQ(proto_feed(&p, b, fl), fl);
      struct proto_frame fr;
      CHECK_EQ(proto_next(&p, &fr), PROTO_FRAME);
      CHECK_EQ(fr.op, op);
      CHECK_EQ(fr.flags, flags);
      CHECK_EQ(fr.reqid, reqid);
      CHECK_EQ(fr.len, pl);
      CHECK(pl == 0 || memcmp(fr.payload, a, pl) == 0);
      frame_lines++;
    } else if (!strcmp(kind, "stream")) {
      unsigned long long dropped;
      CHECK(sscanf(line, "%*s %63s %s %1023s %llu", name, x, ev, &dropped) == 4);
      uint32_t n = unhex(x, a, sizeof a);
      /* Feed byte by byte: the parser must not depend on how bytes arrive. */
      static struct proto_parser p;
      proto_parser_init(&p);
      char got[1024] = "";
      for (uint32_t i = 0; i < n; i++) {
        proto_feed(&p, a + i, 1);
        struct proto_frame fr;
        int e;
        while ((e = proto_next(&p, &fr))) {
          char one[32];
          snprintf(one, sizeof one, "%s%c%x/%u", got[0] ? "," : "",
                   e == PROTO_FRAME ? 'F' : e == PROTO_BADCRC ? 'B' : 'T', fr.op, fr.reqid);
          strncat(got, one, sizeof got - strlen(got) - 1);
        }
      }
      if (strcmp(got[0] ? got : "-", ev) || p.dropped != dropped) {
        fprintf(stderr, "  stream %s: events %s dropped %llu, expected %s dropped %llu\n", name, got,
                (unsigned long long)p.dropped, ev, dropped);
        check_failed_now = 1;
        fclose(f);
        return;
      }
      stream_lines++;
    }
  }
  fclose(f);
  CHECK(crc_lines >= 2 && frame_lines >= 4 && stream_lines >= 7);
}

static void test_op_names(void) {
  CHECK(!strcmp(proto_op_to_str(OP_PUT_DATA), "PUT_DATA"));
  CHECK(!strcmp(proto_op_to_str(OP_JOURNAL_READ), "JOURNAL_READ"));
  CHECK(!strcmp(proto_op_to_str(0x00), "UNKNOWN"));
  CHECK(!strcmp(pifs_err_to_str(PIFS_EBADHASH), "EBADHASH (content does not match its id)"));
}

static uint32_t rnd_state = 12345;
static uint32_t rnd(void) { return (rnd_state = rnd_state * 1103515245u + 12345u) >> 8; }

/* Random payloads, zero-heavy and zero-free: encoding in place (the payload
 * already where proto_encode builds the raw frame), from elsewhere, and by
 * proto_stuff of the raw frame give the same wire bytes, and parse back. */
static void test_stuff_in_place(void) {
  static uint8_t payload[PROTO_MAX_PAYLOAD], a[PROTO_WIRE_SIZE(PROTO_RAW_MAX)],
      b[PROTO_WIRE_SIZE(PROTO_RAW_MAX)], raw[PROTO_RAW_MAX], raw2[PROTO_WIRE_SIZE(PROTO_RAW_MAX)];
  static struct proto_parser p;
  for (int t = 0; t < 300; t++) {
    static const uint32_t edge[] = {0, 1, 239, 240, 253, 254, 508, PROTO_MAX_PAYLOAD};
    uint32_t len = t < 8 ? edge[t] : rnd() % PROTO_MAX_PAYLOAD;
    uint32_t zeros = rnd() % 4; /* 0: none, else one byte in 2^(2*zeros) is zero */
    for (uint32_t i = 0; i < len; i++) {
      uint8_t v = (uint8_t)rnd();
      payload[i] = zeros && (rnd() & ((1u << (2 * zeros)) - 1)) == 0 ? 0 : (v ? v : 1);
    }
    uint32_t n = PROTO_HDR + len + PROTO_TRAILER;
    uint32_t wa = proto_encode(a, OP_PUT_DATA, 0, (uint16_t)t, payload, len);
    memcpy(b + PROTO_WIRE_SIZE(n) - n + PROTO_HDR, payload, len);
    uint32_t wb = proto_encode(b, OP_PUT_DATA, 0, (uint16_t)t, b + PROTO_WIRE_SIZE(n) - n + PROTO_HDR, len);
    proto_header(raw, OP_PUT_DATA, 0, (uint16_t)t, len);
    memcpy(raw + PROTO_HDR, payload, len);
    st32(raw + PROTO_HDR + len, crc32c(payload, len));
    uint32_t wc = proto_stuff(raw2, raw, n);
    CHECK(wa <= PROTO_WIRE_SIZE(n));
    CHECK_EQ(wa, wb);
    CHECK_EQ(wa, wc);
    CHECK(memcmp(a, raw2, wa) == 0);
    CHECK(memcmp(a, b, wa) == 0);
    CHECK(a[0] == 0 && a[wa - 1] == 0 && memchr(a + 1, 0, wa - 2) == NULL);
    proto_parser_init(&p);
    CHECK_EQ(proto_feed(&p, a, wa), wa);
    struct proto_frame f;
    CHECK_EQ(proto_next(&p, &f), PROTO_FRAME);
    CHECK_EQ(f.len, len);
    CHECK(len == 0 || memcmp(f.payload, payload, len) == 0);
    if (check_failed_now) return;
  }
}

/* A stream of frames with one byte lost, added or flipped anywhere: every
 * frame but the one hit (and, for a lost delimiter, none more) arrives. */
static void test_one_fault_costs_one_frame(void) {
  static uint8_t s[40 * 700], payload[600];
  static struct proto_parser p;
  for (int t = 0; t < 400; t++) {
    uint32_t n = 0, frames = 20 + rnd() % 20;
    for (uint32_t k = 0; k < frames; k++) {
      uint32_t len = rnd() % sizeof payload;
      for (uint32_t i = 0; i < len; i++) payload[i] = (uint8_t)rnd();
      n += proto_encode(s + n, OP_PUT_DATA, 0, (uint16_t)k, payload, len);
    }
    uint32_t at = 1 + rnd() % (n - 2), kind = rnd() % 3;
    if (kind == 0) { /* lost */
      memmove(s + at, s + at + 1, n - at - 1);
      n--;
    } else if (kind == 1) { /* added */
      memmove(s + at + 1, s + at, n - at);
      s[at] = (uint8_t)rnd();
      n++;
    } else {
      s[at] ^= (uint8_t)(1u << (rnd() % 8));
    }
    proto_parser_init(&p);
    uint32_t good = 0, off = 0, next_id = 0, gaps = 0;
    while (off < n) {
      off += proto_feed(&p, s + off, n - off);
      struct proto_frame f;
      int e;
      while ((e = proto_next(&p, &f))) {
        if (e != PROTO_FRAME) continue;
        if (f.reqid != next_id) gaps += f.reqid - next_id;
        next_id = f.reqid + 1u;
        good++;
      }
    }
    gaps += frames - next_id;
    /* a flip can make a 00 (splitting one frame) or remove one (merging two) */
    CHECK(good + 2 >= frames);
    CHECK(gaps <= (kind == 2 ? 2u : 1u));
    if (check_failed_now) {
      fprintf(stderr, "  trial %d: fault kind %u at %u of %u: %u of %u frames\n", t, kind, at, n, good, frames);
      return;
    }
  }
}

int main(void) {
  RUN(test_vectors);
  RUN(test_stuff_in_place);
  RUN(test_one_fault_costs_one_frame);
  RUN(test_op_names);
  return CHECK_DONE();
}
