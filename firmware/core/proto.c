#include "proto.h"

#include <string.h>

#include "crc32c.h"

const char *proto_op_to_str(int op) {
  switch (op) {
  case OP_HELLO: return "HELLO";
  case OP_INFO: return "INFO";
  case OP_FORMAT: return "FORMAT";
  case OP_PUT_BEGIN: return "PUT_BEGIN";
  case OP_PUT_DATA: return "PUT_DATA";
  case OP_PUT_COMMIT: return "PUT_COMMIT";
  case OP_GET: return "GET";
  case OP_HAS: return "HAS";
  case OP_LIST: return "LIST";
  case OP_DELETE: return "DELETE";
  case OP_JOURNAL_APPEND: return "JOURNAL_APPEND";
  case OP_JOURNAL_READ: return "JOURNAL_READ";
  case OP_JOURNAL_TRIM: return "JOURNAL_TRIM";
  case OP_SCRUB: return "SCRUB";
  case OP_STAT: return "STAT";
  case OP_NAK: return "NAK";
  case OP_REBOOT: return "REBOOT";
  case OP_LOAD_BEGIN: return "LOAD_BEGIN";
  case OP_LOAD_DATA: return "LOAD_DATA";
  case OP_LOAD_END: return "LOAD_END";
  default: return "UNKNOWN";
  }
}

enum {
  PARSER_READY = 1,    /* a delimiter ended a frame: proto_next evaluates it */
  PARSER_TAKEN = 2,    /* proto_next returned it: the next call starts afresh */
  PARSER_OVERFLOW = 4, /* more bytes than buf holds: a bad frame */
  PARSER_BROKEN = 8,   /* a COBS block cut short by the delimiter: a bad frame */
};

static void restart(struct proto_parser *p) {
  p->len = 0;
  p->wire = 0;
  p->left = 0;
  p->zero = 0;
  p->state = 0;
}

void proto_parser_init(struct proto_parser *p) {
  restart(p);
  p->frame_wire = 0;
  p->dropped = 0;
}

static void put(struct proto_parser *p, uint8_t v) {
  if (p->len < (uint32_t)sizeof p->buf)
    p->buf[p->len++] = v;
  else
    p->state |= PARSER_OVERFLOW;
}

uint32_t proto_feed(struct proto_parser *p, const uint8_t *data, uint32_t n) {
  if (p->state & PARSER_TAKEN) restart(p);
  if (p->state & PARSER_READY) return 0;
  for (uint32_t i = 0; i < n; i++) {
    uint8_t b = data[i];
    if (!b) {
      if (!p->wire) continue; /* an empty frame: padding between frames */
      if (p->left) p->state |= PARSER_BROKEN;
      p->state |= PARSER_READY;
      return i + 1;
    }
    p->wire++;
    if (p->left) {
      put(p, b);
      p->left--;
    } else { /* a code byte: b-1 data bytes follow, then a zero unless b is 0xFF */
      if (p->zero) put(p, 0);
      p->zero = b != 0xFF;
      p->left = (uint8_t)(b - 1);
    }
  }
  return n;
}

int proto_partial(const struct proto_parser *p) { return p->wire && !(p->state & (PARSER_READY | PARSER_TAKEN)); }

int proto_next(struct proto_parser *p, struct proto_frame *f) {
  if (p->state & PARSER_TAKEN) restart(p);
  if (!(p->state & PARSER_READY)) return 0;
  p->state = (uint8_t)((p->state & ~PARSER_READY) | PARSER_TAKEN);
  p->frame_wire = p->wire + 1;
  const uint8_t *h = p->buf;
  if (p->len < PROTO_HDR || h[0] != PROTO_MAGIC0 || h[1] != PROTO_MAGIC1 || ld32(h + 10) != crc32c(h, 10)) {
    p->dropped += p->frame_wire; /* not a frame: garbage, or a header hit by noise */
    return 0;
  }
  f->op = h[2];
  f->flags = h[3];
  f->reqid = ld16(h + 4);
  f->len = ld32(h + 6);
  f->payload = NULL;
  if (f->len > PROTO_MAX_PAYLOAD) return PROTO_TOOLONG;
  /* The header is trustworthy (its CRC held), so anything else wrong is a
   * damaged frame worth a NAK: bytes lost or added, or a bad payload CRC. */
  if ((p->state & (PARSER_OVERFLOW | PARSER_BROKEN)) || p->len != PROTO_HDR + f->len + PROTO_TRAILER ||
      ld32(h + PROTO_HDR + f->len) != crc32c(h + PROTO_HDR, f->len))
    return PROTO_BADCRC;
  f->payload = h + PROTO_HDR;
  return PROTO_FRAME;
}

uint32_t proto_idle(struct proto_parser *p) {
  if (!proto_partial(p)) return 0;
  uint32_t n = p->wire;
  p->dropped += n;
  restart(p);
  return n;
}

void proto_header(uint8_t out[PROTO_HDR], uint8_t op, uint8_t flags, uint16_t reqid, uint32_t len) {
  out[0] = PROTO_MAGIC0;
  out[1] = PROTO_MAGIC1;
  out[2] = op;
  out[3] = flags;
  st16(out + 4, reqid);
  st32(out + 6, len);
  st32(out + 10, crc32c(out, 10));
}

/* COBS: each run of up to 254 non-zero bytes is preceded by a code byte, its
 * length + 1; a code below 0xFF stands for a zero after the run (except at
 * the very end). The writer never overtakes the reader when raw sits at
 * out + PROTO_WIRE_SIZE(n) - n. */
uint32_t proto_stuff(uint8_t *out, const uint8_t *raw, uint32_t n) {
  uint32_t o = 0;
  out[o++] = 0;
  uint32_t code_at = o++;
  uint8_t code = 1;
  for (uint32_t i = 0; i < n; i++) {
    uint8_t b = raw[i];
    if (b) {
      out[o++] = b;
      code++;
    }
    if (!b || code == 0xFF) {
      out[code_at] = code;
      code_at = o++;
      code = 1;
    }
  }
  out[code_at] = code;
  out[o++] = 0;
  return o;
}

uint32_t proto_encode(uint8_t *out, uint8_t op, uint8_t flags, uint16_t reqid, const uint8_t *payload,
                      uint32_t len) {
  uint32_t n = PROTO_HDR + len + PROTO_TRAILER;
  uint8_t *raw = out + (PROTO_WIRE_SIZE(n) - n);
  if (len && raw + PROTO_HDR != payload) memmove(raw + PROTO_HDR, payload, len);
  proto_header(raw, op, flags, reqid, len);
  st32(raw + PROTO_HDR + len, crc32c(raw + PROTO_HDR, len));
  return proto_stuff(out, raw, n);
}
