/* pifs wire protocol v1: frames, opcodes and the streaming frame parser.
 * Every byte is specified in docs/PROTOCOL.md. */
#ifndef PIFS_PROTO_H
#define PIFS_PROTO_H

#include "pifs.h"

#define PROTO_VERSION 1u
#define PROTO_MAGIC0 0xA7u
#define PROTO_MAGIC1 0x1Fu
#define PROTO_HDR 14u     /* magic(2) op(1) flags(1) reqid(2) len(4) hdrcrc(4) */
#define PROTO_TRAILER 4u  /* crc32c of the payload */
#define PROTO_MAX_PAYLOAD (16384u + 64u)
#define PROTO_MAX_DATA 16384u /* largest PUT_DATA / GET / JOURNAL data */

#define PROTO_F_RESP 0x01u

/* Opcodes are ASCII letters so a hex dump of a trace reads as a story. */
enum proto_op {
  OP_HELLO = 'H',
  OP_INFO = 'I',
  OP_FORMAT = 'F',
  OP_PUT_BEGIN = 'B',
  OP_PUT_DATA = 'D',
  OP_PUT_COMMIT = 'C',
  OP_GET = 'G',
  OP_HAS = 'E',
  OP_LIST = 'L',
  OP_DELETE = 'X',
  OP_JOURNAL_APPEND = 'J',
  OP_JOURNAL_READ = 'R',
  OP_SCRUB = 'S',
  OP_STAT = 'T',
  OP_NAK = 'N',
};

const char *proto_op_to_str(int op);

struct proto_frame {
  uint8_t op, flags;
  uint16_t reqid;
  uint32_t len;
  const uint8_t *payload; /* points into the parser's buffer */
};

/* Parser events. */
enum proto_event {
  PROTO_FRAME = 1,   /* a whole valid frame */
  PROTO_BADCRC = 2,  /* header valid, payload CRC wrong: answer NAK(reqid) */
  PROTO_TOOLONG = 3, /* header valid, length above the maximum: answer EPROTO */
};

struct proto_parser {
  uint8_t buf[PROTO_HDR + PROTO_MAX_PAYLOAD + PROTO_TRAILER];
  uint32_t head;     /* buffered bytes are buf[head .. head+len) */
  uint32_t len;
  uint32_t consumed; /* bytes from head belonging to the frame last returned */
  uint64_t dropped;  /* garbage bytes skipped while resynchronising */
};

void proto_parser_init(struct proto_parser *p);
/* Appends up to n bytes to the parser's buffer; returns how many it took. */
uint32_t proto_feed(struct proto_parser *p, const uint8_t *data, uint32_t n);
/* Returns the next event (filling *f) or 0 when more bytes are needed. The
 * frame's payload stays valid until the next call. */
int proto_next(struct proto_parser *p, struct proto_frame *f);

/* Drops a partial frame: called when the line has been idle for a while
 * (the sender died mid-frame), so the next frame is not swallowed as its
 * payload. Returns the bytes dropped. */
uint32_t proto_idle(struct proto_parser *p);

/* Writes a frame header into out[0..13] for a payload of len bytes. */
void proto_header(uint8_t out[PROTO_HDR], uint8_t op, uint8_t flags, uint16_t reqid, uint32_t len);
/* Encodes a whole frame into out (PROTO_HDR + len + 4 bytes); returns its size. */
uint32_t proto_encode(uint8_t *out, uint8_t op, uint8_t flags, uint16_t reqid, const uint8_t *payload,
                      uint32_t len);

#endif
