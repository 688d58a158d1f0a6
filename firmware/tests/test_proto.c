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

int main(void) {
  RUN(test_vectors);
  RUN(test_op_names);
  return CHECK_DONE();
}
