/* libFuzzer target: bytes from the host into the node, and into the bare
 * frame parser.
 *
 * Input: [mode] [s0 s1 s2 s3] [data...]
 *   mode % 4 == 0  raw:    data is the byte stream, fed to node_feed
 *   mode % 4 == 1  framed: data is a list of records [op][flags][len16 LE]
 *                          [payload], each encoded as a frame with correct
 *                          CRCs (reqid = record number); the stream is fed to
 *                          node_feed (reaches the handlers without the fuzzer
 *                          having to solve CRC-32C)
 *   mode % 4 == 2  raw bytes to proto_feed/proto_next only
 *   mode % 4 == 3  framed records to proto_feed/proto_next only
 * The stream is cut into pieces whose sizes cycle through s0..s3 (0: all the
 * rest; 1..191: that many bytes; 192..255: (s-191)*512 bytes).
 *
 * Invariants (a broken one aborts):
 *  - every frame the node writes is one well-formed response frame (checked
 *    with a separate parser: valid header and payload CRC, RESP flag, an i32
 *    status that is a known pifs_err, no byte before or after it);
 *  - the node answers every request event exactly once, in order, whatever
 *    the cut: the (op, reqid) of its answers equal those of the events of a
 *    second parser given the whole stream in one piece;
 *  - the node writes only inside PIFS/STORE.DAT unless it answered a FORMAT
 *    (the store exists on this card, so FATs, directories and every other
 *    sector stay untouched); even then (a grow) only the FATs, FSInfo, the
 *    PIFS/ directory and the sectors from STORE.DAT on;
 *  - what the node acknowledged survives: after node_close the card opens
 *    again with store_open, with the same number of chunks and journal bytes;
 *  - parser: an event's frame is in the buffer with a good header CRC; a
 *    PROTO_FRAME has the exact length and a good payload CRC, TOOLONG's len
 *    is above the maximum; it never buffers past its buffer nor gets stuck;
 *    the bytes it counts (dropped + the wire bytes of its events) are never
 *    more than it was fed; and the events do not depend on the cut. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crc32c.h"
#include "fat32.h"
#include "fixture.h"
#include "node.h"
#include "proto.h"
#include "ramdisk.h"
#include "sha256.h"
#include "store.h"

static void die(const char *msg, long long a, long long b) {
  fprintf(stderr, "\nINVARIANT BROKEN: %s (%lld, %lld)\n", msg, a, b);
  abort();
}

static struct ramdisk disk;
static uint64_t store_lba, store_secs, pifs_dir_lba;
static struct fat32_vol vol;
static uint32_t formats; /* FORMAT answers in this run */
static int verbose; /* PIFS_FUZZ_VERBOSE=1: print every answer (to read a reproducer) */

/* ---- the card, made once ---- */

static void put_chunk(struct pifs_store *s, int k) {
  uint8_t data[2048], id[32];
  uint32_t n = fix_chunk_size(k), h, have;
  fix_chunk(k, data);
  sha256(data, n, id);
  if (store_put_begin(s, id, n, &h, &have) || store_put_data(s, h, 0, data, n, &have) ||
      store_put_commit(s, h))
    die("fixture: put failed", k, 0);
}

static void make_card(void) {
  rd_mkfs(&disk, FIX_CARD_SECTORS, 0);
  struct pifs_format_opts o;
  memset(&o, 0, sizeof o);
  memset(o.cluster_id, FIX_CLUSTER, 16);
  o.node_id = FIX_NODE_ID;
  o.size_sectors = FIX_STORE_SECTORS;
  o.nonce = FIX_NONCE;
  struct pifs_store *s = NULL;
  int err = store_format(&s, &disk.bd, &o);
  if (err) die("fixture: store_format failed", err, 0);
  put_chunk(s, 0);
  put_chunk(s, 1);
  put_chunk(s, 2);
  uint8_t data[2048], id[32];
  fix_chunk(2, data);
  sha256(data, fix_chunk_size(2), id);
  uint64_t jl;
  if (store_delete(s, id) || store_journal_append(s, 0, "hello", 5, &jl) ||
      store_journal_append(s, 5, "world", 5, &jl))
    die("fixture: delete/journal failed", 0, 0);
  struct pifs_store_info in;
  store_info(s, &in);
  store_lba = in.store_lba;
  store_secs = in.store_sectors;
  store_close(s);
  rd_commit(&disk);
  memset(&vol, 0, sizeof vol);
  if (fat32_mount(&vol, &disk.bd)) die("fixture: the card does not mount", 0, 0);
  const uint8_t *d = disk.cur + (vol.part_lba + vol.data_start) * PIFS_SECTOR;
  for (int i = 0; i < 16 && !pifs_dir_lba; i++, d += 32)
    if (!memcmp(d, "PIFS       ", 11)) {
      uint32_t c = ((uint32_t)ld16(d + 20) << 16) | ld16(d + 26);
      pifs_dir_lba = vol.part_lba + vol.data_start + (uint64_t)(c - 2) * vol.sec_per_clus;
    }
  if (!pifs_dir_lba) die("fixture: no PIFS directory", 0, 0);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  make_card();
  verbose = getenv("PIFS_FUZZ_VERBOSE") != NULL;
  return 0;
}

/* ---- cutting the stream ---- */

struct cutter {
  uint8_t s[4];
  unsigned k;
};

static uint32_t next_cut(struct cutter *c, uint32_t left) {
  uint8_t s = c->s[c->k++ & 3];
  uint32_t n = s == 0 ? left : s < 192 ? s : (uint32_t)(s - 191) * 512u;
  return n < left ? n : left;
}

/* Framed mode: turns records into a stream of valid frames. */
static uint8_t *frame_records(const uint8_t *d, size_t n, size_t *out_len) {
  size_t cap = 2 * n + n / 4 * (PROTO_HDR + PROTO_TRAILER + 8) + 64, o = 0;
  uint8_t *out = malloc(cap);
  if (!out) die("out of memory", (long long)cap, 0);
  uint16_t reqid = 1;
  while (n >= 4) {
    uint8_t op = d[0], flags = d[1];
    size_t len = ld16(d + 2);
    d += 4;
    n -= 4;
    if (len > n) len = n;
    o += proto_encode(out + o, op, flags, reqid++, d, (uint32_t)len);
    d += len;
    n -= len;
  }
  *out_len = o;
  return out;
}

/* ---- the bare parser ---- */

struct event {
  int ev;
  uint8_t op, flags;
  uint16_t reqid;
  uint32_t len;
};

#define MAX_EVENTS 65536
static struct event ev_a[MAX_EVENTS], ev_b[MAX_EVENTS];
static struct proto_parser pa, pb;

/* Checks one event of p against the parser's contract. */
static void check_event(const struct proto_parser *p, int ev, const struct proto_frame *f) {
  if (p->len > sizeof p->buf) die("parser: buffered more than its buffer", p->len, sizeof p->buf);
  const uint8_t *h = p->buf;
  if (p->len < PROTO_HDR) die("parser: event shorter than a header", ev, p->len);
  if (h[0] != PROTO_MAGIC0 || h[1] != PROTO_MAGIC1) die("parser: event not at a magic", h[0], h[1]);
  if (ld32(h + 10) != crc32c(h, 10)) die("parser: event with a bad header CRC", ev, 0);
  if (f->len != ld32(h + 6) || f->op != h[2] || f->flags != h[3] || f->reqid != ld16(h + 4))
    die("parser: frame fields differ from the header", ev, 0);
  if (p->frame_wire < 2) die("parser: event of no wire bytes", p->frame_wire, 0);
  switch (ev) {
  case PROTO_FRAME:
    if (f->len > PROTO_MAX_PAYLOAD) die("parser: frame longer than PROTO_MAX_PAYLOAD", f->len, 0);
    if (f->payload != h + PROTO_HDR) die("parser: payload not after the header", 0, 0);
    if (p->len != PROTO_HDR + f->len + PROTO_TRAILER) die("parser: frame of the wrong length", p->len, f->len);
    if (ld32(f->payload + f->len) != crc32c(f->payload, f->len)) die("parser: FRAME with a bad payload CRC", f->len, 0);
    break;
  case PROTO_BADCRC:
    if (f->len > PROTO_MAX_PAYLOAD) die("parser: BADCRC longer than PROTO_MAX_PAYLOAD", f->len, 0);
    break;
  case PROTO_TOOLONG:
    if (f->len <= PROTO_MAX_PAYLOAD) die("parser: TOOLONG of a frame that fits", f->len, 0);
    break;
  default:
    die("parser: unknown event", ev, 0);
  }
}

/* Feeds d[0..n) in pieces (c NULL: one piece as far as the parser takes it),
 * records the events. Returns their number. */
static uint32_t parse_all(struct proto_parser *p, const uint8_t *d, size_t n, struct cutter *c,
                          struct event *evs) {
  uint32_t nev = 0;
  uint64_t fed = 0, used = 0;
  int idle_feeds = 0;
  proto_parser_init(p);
  while (n) {
    uint32_t piece = c ? next_cut(c, (uint32_t)(n > 0x7fffffff ? 0x7fffffff : n)) : (uint32_t)n;
    while (piece) {
      uint32_t k = proto_feed(p, d, piece);
      if (k > piece) die("parser: took more than offered", k, piece);
      if (p->len > sizeof p->buf) die("parser: buffered more than its buffer", p->len, 0);
      d += k;
      n -= k;
      piece -= k;
      fed += k;
      struct proto_frame f;
      int ev;
      uint32_t guard = 0;
      while ((ev = proto_next(p, &f))) {
        check_event(p, ev, &f);
        used += p->frame_wire;
        if (nev < MAX_EVENTS) evs[nev++] = (struct event){ev, f.op, f.flags, f.reqid, f.len};
        if (++guard > 1) die("parser: two events from one delimiter", guard, 0);
      }
      if (p->dropped + used > fed)
        die("parser: counted more bytes than fed", (long long)fed, (long long)(p->dropped + used));
      /* Took nothing twice in a row (once is a frame waiting for proto_next):
       * node_feed would spin forever. */
      if (k) idle_feeds = 0;
      else if (++idle_feeds > 1) die("parser: stuck", p->len, 0);
    }
  }
  return nev;
}

static void parser_mode(const uint8_t *d, size_t n, struct cutter *c) {
  uint32_t na = parse_all(&pa, d, n, c, ev_a);
  uint32_t nb = parse_all(&pb, d, n, NULL, ev_b);
  if (na != nb) die("parser: the cut changed the number of events", na, nb);
  for (uint32_t i = 0; i < na; i++)
    if (memcmp(&ev_a[i], &ev_b[i], sizeof ev_a[i])) die("parser: the cut changed event", i, ev_a[i].ev);
  if (pa.dropped != pb.dropped) die("parser: the cut changed the dropped count", (long long)pa.dropped, (long long)pb.dropped);
}

/* ---- the node ---- */

static struct pifs_node node;
static struct proto_parser chk;
struct answer {
  uint8_t op;
  uint16_t reqid;
};
static struct answer answers[MAX_EVENTS];
static uint32_t nanswers;

static int host_write(void *io, const void *buf, uint32_t n) {
  (void)io;
  if (n < PROTO_HDR + 4 + PROTO_TRAILER || n > PROTO_WIRE_SIZE(sizeof chk.buf)) die("response of impossible size", n, 0);
  proto_parser_init(&chk);
  if (proto_feed(&chk, buf, n) != n) die("response does not fit a parser", n, 0);
  struct proto_frame f;
  int ev = proto_next(&chk, &f);
  if (ev != PROTO_FRAME) die("response is not a well-formed frame", ev, n);
  if (chk.dropped || chk.frame_wire + 1 != n || ((const uint8_t *)buf)[0]) die("response has bytes around its frame", (long long)chk.dropped, chk.frame_wire);
  if (!(f.flags & PROTO_F_RESP)) die("response without the RESP flag", f.op, f.flags);
  if (f.len < 4) die("response without a status", f.len, 0);
  int status = (int)ld32(f.payload);
  if (!strcmp(pifs_err_to_str(status), "unknown error")) die("response status is not a pifs_err", status, f.op);
  if (nanswers < MAX_EVENTS) answers[nanswers++] = (struct answer){f.op, f.reqid};
  if (f.op == OP_FORMAT) formats++;
  if (verbose) fprintf(stderr, "  answer %-14s reqid %5u len %5u status %s\n", proto_op_to_str(f.op), f.reqid, f.len, pifs_err_to_str(status));
  return 0;
}

static void fat_now(uint16_t *date, uint16_t *time) {
  *date = (uint16_t)(((2026 - 1980) << 9) | (3 << 5) | 14);
  *time = 0;
}

static void node_mode(const uint8_t *d, size_t n, struct cutter *c) {
  struct pifs_platform pl = {
      .board = "fuzz", .serial = 0x1234, .window = 65536, .write = host_write, .fat_now = fat_now};
  rd_restore(&disk);
  rd_restrict(&disk, "node wrote outside STORE.DAT and the sectors a grow may change");
  rd_allow(&disk, vol.part_lba + vol.reserved, vol.part_lba + vol.data_start); /* the FATs */
  if (vol.fsinfo_sec) rd_allow(&disk, vol.part_lba + vol.fsinfo_sec, vol.part_lba + vol.fsinfo_sec + 1);
  rd_allow(&disk, pifs_dir_lba, pifs_dir_lba + vol.sec_per_clus);  /* STORE.DAT's entry */
  rd_allow(&disk, store_lba, vol.part_lba + vol.total_sectors);    /* the store, grown */
  nanswers = 0;
  formats = 0;

  node_init(&node, &disk.bd, &pl);
  if (node.card_err || !node.store) die("the fixture card did not open", node.card_err, 0);
  const uint8_t *p = d;
  size_t left = n;
  while (left) {
    uint32_t piece = next_cut(c, (uint32_t)(left > 0x7fffffff ? 0x7fffffff : left));
    node_feed(&node, p, piece);
    p += piece;
    left -= piece;
  }

  /* One answer per request event, in order, whatever the cut. */
  uint32_t nev = parse_all(&pb, d, n, NULL, ev_b), k = 0;
  for (uint32_t i = 0; i < nev; i++) {
    if (ev_b[i].flags & PROTO_F_RESP) continue; /* echoes are ignored */
    uint8_t op = ev_b[i].ev == PROTO_BADCRC ? OP_NAK : ev_b[i].op;
    if (k >= nanswers) die("request event without an answer", i, nanswers);
    if (answers[k].op != op || answers[k].reqid != ev_b[i].reqid) die("answer does not match its request", k, op);
    k++;
  }
  if (k != nanswers && nanswers < MAX_EVENTS) die("more answers than requests", nanswers, k);

  /* Only FORMAT (re-initialise, grow) may write outside STORE.DAT as it was. */
  if (!formats)
    for (uint32_t i = 0; i < disk.nlist; i++)
      if (disk.list[i] < store_lba || disk.list[i] >= store_lba + store_secs)
        die("node wrote outside PIFS/STORE.DAT with no FORMAT request", disk.list[i], 0);

  /* What was acknowledged is on the card. */
  struct pifs_store_info before, after;
  int had = node.store != NULL;
  if (had) store_info(node.store, &before);
  node_close(&node);
  if (had) {
    struct pifs_store *s = NULL;
    rd_policy_none(&disk);
    disk.writes_forbidden = 1;
    disk.why = "store_open wrote to the card";
    int err = store_open(&s, &disk.bd);
    if (err) die("the node's store no longer opens", err, 0);
    store_info(s, &after);
    store_close(s);
    if (after.chunks != before.chunks) die("chunk count changed across a remount", before.chunks, after.chunks);
    if (after.journal_len != before.journal_len)
      die("journal length changed across a remount", (long long)before.journal_len, (long long)after.journal_len);
    if (memcmp(after.cluster_id, before.cluster_id, 16) || after.epoch != before.epoch ||
        after.log_used != before.log_used)
      die("store state changed across a remount", before.epoch, after.epoch);
  }
  rd_restore(&disk);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 5 || size > (1u << 20)) return 0;
  struct cutter c;
  memcpy(c.s, data + 1, 4);
  c.k = 0;
  unsigned mode = data[0] & 3u;
  const uint8_t *d = data + 5;
  size_t n = size - 5;
  uint8_t *framed = NULL;
  if (mode & 1u) {
    framed = frame_records(d, n, &n);
    d = framed;
  }
  if (mode < 2) {
    node_mode(d, n, &c);
  } else {
    parser_mode(d, n, &c);
  }
  free(framed);
  return 0;
}
