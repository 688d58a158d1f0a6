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
  case OP_SCRUB: return "SCRUB";
  case OP_STAT: return "STAT";
  case OP_NAK: return "NAK";
  default: return "UNKNOWN";
  }
}

void proto_parser_init(struct proto_parser *p) {
  p->head = 0;
  p->len = 0;
  p->consumed = 0;
  p->dropped = 0;
}

/* Skipping bytes only moves the head: no byte is copied until a feed needs
 * the room (and then each byte is moved at most once per frame). */
static void drop(struct proto_parser *p, uint32_t n) {
  p->head += n;
  p->len -= n;
  if (!p->len) p->head = 0;
}

uint32_t proto_feed(struct proto_parser *p, const uint8_t *data, uint32_t n) {
  if (p->consumed) {
    drop(p, p->consumed);
    p->consumed = 0;
  }
  if (p->head && n > (uint32_t)sizeof p->buf - p->head - p->len) {
    memmove(p->buf, p->buf + p->head, p->len);
    p->head = 0;
  }
  uint32_t room = (uint32_t)sizeof p->buf - p->head - p->len;
  if (n > room) n = room;
  memcpy(p->buf + p->head + p->len, data, n);
  p->len += n;
  return n;
}

int proto_next(struct proto_parser *p, struct proto_frame *f) {
  if (p->consumed) {
    drop(p, p->consumed);
    p->consumed = 0;
  }
  for (;;) {
    /* Hunt for the magic. */
    const uint8_t *b = p->buf + p->head;
    uint32_t i = 0;
    while (i < p->len && !(b[i] == PROTO_MAGIC0 && (i + 1 == p->len || b[i + 1] == PROTO_MAGIC1)))
      i++;
    if (i) {
      p->dropped += i;
      drop(p, i);
    }
    if (p->len < PROTO_HDR) return 0;
    const uint8_t *h = p->buf + p->head;
    if (ld32(h + 10) != crc32c(h, 10)) { /* not a header: skip a byte, hunt again */
      p->dropped++;
      drop(p, 1);
      continue;
    }
    f->op = h[2];
    f->flags = h[3];
    f->reqid = ld16(h + 4);
    f->len = ld32(h + 6);
    f->payload = NULL;
    if (f->len > PROTO_MAX_PAYLOAD) {
      p->consumed = PROTO_HDR; /* the payload bytes are resynchronised over */
      return PROTO_TOOLONG;
    }
    uint32_t total = PROTO_HDR + f->len + PROTO_TRAILER;
    if (p->len < total) return 0;
    p->consumed = total;
    if (ld32(h + PROTO_HDR + f->len) != crc32c(h + PROTO_HDR, f->len)) return PROTO_BADCRC;
    f->payload = h + PROTO_HDR;
    return PROTO_FRAME;
  }
}

uint32_t proto_idle(struct proto_parser *p) {
  if (p->consumed) {
    drop(p, p->consumed);
    p->consumed = 0;
  }
  uint32_t n = p->len;
  p->dropped += n;
  p->len = 0;
  p->head = 0;
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

uint32_t proto_encode(uint8_t *out, uint8_t op, uint8_t flags, uint16_t reqid, const uint8_t *payload,
                      uint32_t len) {
  proto_header(out, op, flags, reqid, len);
  if (len && out + PROTO_HDR != payload) memmove(out + PROTO_HDR, payload, len);
  st32(out + PROTO_HDR + len, crc32c(out + PROTO_HDR, len));
  return PROTO_HDR + len + PROTO_TRAILER;
}
