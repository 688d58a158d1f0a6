/* pifs wire protocol v2: frames, opcodes and the streaming frame parser.
 * Every byte is specified in docs/PROTOCOL.md. A frame travels COBS-stuffed
 * between 0x00 delimiters, so a lost or added byte costs one frame only. */
#ifndef PIFS_PROTO_H
#define PIFS_PROTO_H

#include "pifs.h"

#define PROTO_VERSION 2u
#define PROTO_MAGIC0 0xA7u
#define PROTO_MAGIC1 0x1Fu
#define PROTO_HDR 14u     /* magic(2) op(1) flags(1) reqid(2) len(4) hdrcrc(4) */
#define PROTO_TRAILER 4u  /* crc32c of the payload */
#define PROTO_MAX_PAYLOAD (16384u + 64u)
#define PROTO_MAX_DATA 16384u /* largest PUT_DATA / GET / JOURNAL data */
#define PROTO_RAW_MAX (PROTO_HDR + PROTO_MAX_PAYLOAD + PROTO_TRAILER)
/* Wire bytes of a raw frame of n bytes: leading and trailing 0x00, one COBS
 * code byte per started 254 bytes (and one more for an exact multiple). */
#define PROTO_WIRE_SIZE(n) ((n) + (n) / 254u + 3u)

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
  OP_JOURNAL_TRIM = 'P', /* "prune" */
  OP_SCRUB = 'S',
  OP_STAT = 'T',
  OP_NAK = 'N',
  OP_REBOOT = 'Z',
  /* the bootloader's (pi/boot_main.c) */
  OP_LOAD_BEGIN = 'l',
  OP_LOAD_DATA = 'd',
  OP_LOAD_END = 'e',
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

/* Receive state. Bytes are COBS-decoded as they arrive into buf; a 0x00
 * ends the frame. proto_feed stops after a delimiter until proto_next has
 * taken that frame, so buf only ever holds one frame. */
struct proto_parser {
  uint8_t buf[PROTO_RAW_MAX];
  uint32_t len;        /* decoded bytes of the frame being received */
  uint32_t wire;       /* wire bytes of it so far (without the delimiter) */
  uint32_t frame_wire; /* wire bytes of the frame last returned (with its delimiter) */
  uint8_t left;        /* data bytes left in the current COBS block (0: a code byte is next) */
  uint8_t zero;        /* a 0x00 is due before the next block (the last code was < 0xFF) */
  uint8_t state;       /* PARSER_* bits (proto.c) */
  uint64_t dropped;    /* wire bytes of discarded non-frames (garbage, bad headers) */
};

void proto_parser_init(struct proto_parser *p);
/* Takes bytes up to and including the next frame delimiter; returns how many
 * it took (0 while a complete frame waits for proto_next). */
uint32_t proto_feed(struct proto_parser *p, const uint8_t *data, uint32_t n);
/* Returns the next event (filling *f) or 0 when more bytes are needed. The
 * frame's payload stays valid until the next call of any proto_ function on
 * this parser. */
int proto_next(struct proto_parser *p, struct proto_frame *f);
/* Whether bytes of an unfinished frame are buffered. */
int proto_partial(const struct proto_parser *p);

/* Drops a partial frame: called when the line has been idle for a while
 * (the sender died mid-frame). Returns the bytes dropped. */
uint32_t proto_idle(struct proto_parser *p);

/* Writes the raw (unstuffed) frame header into out[0..13] for a payload of
 * len bytes. */
void proto_header(uint8_t out[PROTO_HDR], uint8_t op, uint8_t flags, uint16_t reqid, uint32_t len);
/* Encodes a whole frame as wire bytes (0x00, COBS of header+payload+CRC,
 * 0x00) into out, which needs PROTO_WIRE_SIZE(PROTO_HDR + len + PROTO_TRAILER)
 * bytes; payload may point anywhere, even into out. Returns the wire size. */
uint32_t proto_encode(uint8_t *out, uint8_t op, uint8_t flags, uint16_t reqid, const uint8_t *payload,
                      uint32_t len);
/* COBS-stuffs raw[0..n) between two delimiters into out (no overlap unless
 * out + PROTO_WIRE_SIZE(n) - n == raw, the layout proto_encode uses). */
uint32_t proto_stuff(uint8_t *out, const uint8_t *raw, uint32_t n);

#endif
