#include "node.h"

#include <string.h>

#include "fat32.h"

/* Response payloads start with an i32 status; rp points at the payload. */
#define RP (n->tx + PROTO_HDR)

static void send(struct pifs_node *n, uint8_t op, uint16_t reqid, uint32_t len) {
  uint32_t total = proto_encode(n->wire, op, PROTO_F_RESP, reqid, RP, len);
  n->pl.write(n->pl.io, n->wire, total);
}

static void send_status(struct pifs_node *n, uint8_t op, uint16_t reqid, int status) {
  st32(RP, (uint32_t)status);
  send(n, op, reqid, 4);
}

static uint32_t put_str(uint8_t *p, const char *s) {
  uint32_t l = (uint32_t)strlen(s);
  if (l > 255) l = 255;
  p[0] = (uint8_t)l;
  memcpy(p + 1, s, l);
  return 1 + l;
}

/* INFO layout (also the FORMAT reply): see docs/PROTOCOL.md. */
static uint32_t info_payload(struct pifs_node *n, uint8_t *p) {
  struct pifs_store_info in;
  memset(&in, 0, sizeof in);
  if (n->store) store_info(n->store, &in);
  st32(p, (uint32_t)(n->store ? 0 : n->card_err));
  memcpy(p + 4, in.cluster_id, 16);
  st32(p + 20, in.node_id);
  st64(p + 24, in.data_sectors * PIFS_SECTOR);
  st64(p + 32, in.free_sectors * PIFS_SECTOR);
  st32(p + 40, in.chunks);
  st64(p + 44, in.journal_len);
  st64(p + 52, in.store_lba);
  st64(p + 60, in.store_sectors);
  st32(p + 68, in.log_used);
  st32(p + 72, in.log_half);
  st32(p + 76, in.generation);
  st32(p + 80, in.epoch);
  st32(p + 84, n->frames_ok);
  st32(p + 88, n->frames_bad);
  st32(p + 92, n->naks);
  st64(p + 96, n->bytes_in);
  st64(p + 104, in.journal_start);
  st32(p + 112, n->pl.revision);
  st32(p + 116, n->pl.mem_bytes);
  st32(p + 120, (uint32_t)n->pl.card_init_step);
  st32(p + 124, n->pl.card_init_tries);
  const struct pifs_card_info *c = &n->pl.card;
  st64(p + 128, c->bytes);
  p[136] = c->mid;
  memcpy(p + 137, c->oid, 2);
  memcpy(p + 139, c->pnm, 5);
  p[144] = c->prv;
  p[145] = c->speed_class;
  st16(p + 146, c->mdt);
  st32(p + 148, c->psn);
  p[152] = c->uhs_grade;
  p[153] = c->bus_width;
  p[154] = c->high_capacity;
  p[155] = (uint8_t)n->pl.cpu_flags;
  st32(p + 156, c->clock_hz);
  st32(p + 160, n->pl.sha256_kbps);
  return 164;
}

struct list_ctx {
  uint8_t *p;
  uint32_t count;
};

static void list_cb(void *ctx, const uint8_t id[32], uint32_t size) {
  struct list_ctx *c = ctx;
  memcpy(c->p + 36 * c->count, id, 32);
  st32(c->p + 36 * c->count + 32, size);
  c->count++;
}

static void scrub_cb(void *ctx, const uint8_t id[32], int err) {
  struct list_ctx *c = ctx;
  memcpy(c->p + 36 * c->count, id, 32);
  st32(c->p + 36 * c->count + 32, (uint32_t)err);
  c->count++;
}

static void handle(struct pifs_node *n, const struct proto_frame *f) {
  const uint8_t *q = f->payload;
  uint32_t len = f->len;
  uint8_t *p = RP;
  struct pifs_store *s = n->store;
  int err;

  switch (f->op) {
  case OP_HELLO: {
    st32(p, 0);
    st16(p + 4, PROTO_VERSION);
    st16(p + 6, 0);
    st32(p + 8, n->pl.window);
    st32(p + 12, PROTO_MAX_DATA);
    st64(p + 16, n->pl.serial);
    st32(p + 24, (uint32_t)(n->store ? 0 : n->card_err));
    st32(p + 28, PIFS_PUT_AHEAD);
    uint32_t o = 32;
    o += put_str(p + o, n->pl.board);
    o += put_str(p + o, PIFS_FW_VERSION);
    send(n, f->op, f->reqid, o);
    return;
  }
  case OP_INFO:
    send(n, f->op, f->reqid, info_payload(n, p));
    return;
  case OP_REBOOT:
    if (!n->pl.reboot) {
      send_status(n, f->op, f->reqid, PIFS_EPROTO);
      return;
    }
    send_status(n, f->op, f->reqid, 0);
    n->pl.reboot();
    return;
  case OP_FORMAT: {
    if (len != 48) {
      send_status(n, f->op, f->reqid, PIFS_EPROTO);
      return;
    }
    struct pifs_format_opts o;
    memset(&o, 0, sizeof o);
    o.force = (int)(ld32(q) & 1u);
    memcpy(o.cluster_id, q + 4, 16);
    o.node_id = ld32(q + 20);
    o.size_sectors = ld64(q + 24);
    o.reserve_sectors = ld64(q + 32);
    o.nonce = ld32(q + 40);
    o.fat_date = ld16(q + 44);
    o.fat_time = ld16(q + 46);
    if (!o.fat_date && n->pl.fat_now) n->pl.fat_now(&o.fat_date, &o.fat_time);
    struct pifs_store *ns = NULL;
    if (ld32(q) & 2u) { /* grow the store this card already has */
      struct pifs_store_info in;
      if (n->store) store_info(n->store, &in);
      err = !n->store ? n->card_err
            : memcmp(in.cluster_id, o.cluster_id, 16) ? PIFS_EWRONGCLUSTER
            : store_grow(n->store, o.size_sectors, o.reserve_sectors);
      uint32_t l = info_payload(n, p);
      st32(p, (uint32_t)err);
      send(n, f->op, f->reqid, l);
      return;
    }
    err = store_format(&ns, n->bd, &o);
    if (!err) {
      store_close(n->store);
      n->store = ns;
      n->card_err = 0;
      send(n, f->op, f->reqid, info_payload(n, p));
    } else {
      /* The card stays as it was: answer with the reason and the old state. */
      uint32_t l = info_payload(n, p);
      st32(p, (uint32_t)err);
      send(n, f->op, f->reqid, l);
    }
    return;
  }
  default:
    break;
  }

  if (!s) { /* no store: known operations get the card's state, others EPROTO */
    int known = strcmp(proto_op_to_str(f->op), "UNKNOWN") != 0 && f->op != OP_NAK;
    send_status(n, f->op, f->reqid, known ? n->card_err : PIFS_EPROTO);
    return;
  }

  switch (f->op) {
  case OP_PUT_BEGIN: {
    if (len != 36) break;
    uint32_t h = 0, have = 0;
    err = store_put_begin(s, q, ld32(q + 32), &h, &have);
    st32(p, (uint32_t)err);
    st32(p + 4, h);
    st32(p + 8, have);
    send(n, f->op, f->reqid, 12);
    return;
  }
  case OP_PUT_DATA: {
    if (len < 8) break;
    uint32_t have = 0;
    err = store_put_data(s, ld32(q), ld32(q + 4), q + 8, len - 8, &have);
    st32(p, (uint32_t)err);
    st32(p + 4, have);
    send(n, f->op, f->reqid, 8);
    return;
  }
  case OP_PUT_COMMIT:
    if (len != 4) break;
    send_status(n, f->op, f->reqid, store_put_commit(s, ld32(q)));
    return;
  case OP_GET: {
    if (len != 40) break;
    uint32_t off = ld32(q + 32), want = ld32(q + 36), size = 0;
    err = want > PROTO_MAX_DATA ? PIFS_EINVAL : store_get(s, q, off, p + 8, want, &size);
    st32(p, (uint32_t)err);
    st32(p + 4, size);
    send(n, f->op, f->reqid, err ? 8 : 8 + want);
    return;
  }
  case OP_HAS: {
    if (len < 4 || (len - 4) % 32 || ld32(q) != (len - 4) / 32 || ld32(q) > 512) break;
    uint32_t cnt = ld32(q);
    st32(p, 0);
    st32(p + 4, cnt);
    for (uint32_t i = 0; i < cnt; i++) {
      uint32_t size = 0;
      if (store_has(s, q + 4 + 32 * i, &size)) size = 0;
      st32(p + 8 + 4 * i, size);
    }
    send(n, f->op, f->reqid, 8 + 4 * cnt);
    return;
  }
  case OP_LIST: {
    if (len != 8) break;
    uint32_t cur = ld32(q), max = ld32(q + 4);
    if (max > 400) max = 400;
    struct list_ctx c = {p + 12, 0};
    err = store_list(s, &cur, max, list_cb, &c);
    st32(p, (uint32_t)err);
    st32(p + 4, cur);
    st32(p + 8, c.count);
    send(n, f->op, f->reqid, 12 + 36 * c.count);
    return;
  }
  case OP_DELETE:
    if (len != 32) break;
    send_status(n, f->op, f->reqid, store_delete(s, q));
    return;
  case OP_JOURNAL_APPEND: {
    if (len < 8) break;
    uint64_t jl = 0;
    err = store_journal_append(s, ld64(q), q + 8, len - 8, &jl);
    st32(p, (uint32_t)err);
    st64(p + 4, jl);
    send(n, f->op, f->reqid, 12);
    return;
  }
  case OP_JOURNAL_READ: {
    if (len != 12) break;
    uint32_t max = ld32(q + 8), got = 0;
    uint64_t jl = 0;
    if (max > PROTO_MAX_DATA) max = PROTO_MAX_DATA;
    err = store_journal_read(s, ld64(q), p + 12, max, &got, &jl);
    st32(p, (uint32_t)err);
    st64(p + 4, jl);
    send(n, f->op, f->reqid, err ? 12 : 12 + got);
    return;
  }
  case OP_JOURNAL_TRIM: {
    if (len != 8) break;
    uint64_t js = 0, jl = 0;
    err = store_journal_trim(s, ld64(q), &js, &jl);
    st32(p, (uint32_t)err);
    st64(p + 4, js);
    st64(p + 12, jl);
    send(n, f->op, f->reqid, 20);
    return;
  }
  case OP_SCRUB: {
    if (len != 8) break;
    uint32_t cur = ld32(q), max = ld32(q + 4), checked = 0;
    if (max > 400) max = 400; /* bounds the reply: at most 400 bad entries */
    struct list_ctx c = {p + 16, 0};
    err = store_scrub(s, &cur, max, &checked, scrub_cb, &c);
    st32(p, (uint32_t)err);
    st32(p + 4, cur);
    st32(p + 8, checked);
    st32(p + 12, c.count);
    send(n, f->op, f->reqid, 16 + 36 * c.count);
    return;
  }
  case OP_STAT: {
    if (len != 32) break;
    uint32_t size = 0;
    err = store_has(s, q, &size);
    st32(p, (uint32_t)err);
    st32(p + 4, size);
    send(n, f->op, f->reqid, 8);
    return;
  }
  default:
    send_status(n, f->op, f->reqid, PIFS_EPROTO); /* unknown opcode */
    return;
  }
  /* A known opcode with a payload of the wrong length. */
  send_status(n, f->op, f->reqid, PIFS_EPROTO);
}

void node_init(struct pifs_node *n, struct pifs_bdev *bd, const struct pifs_platform *pl) {
  memset(n, 0, sizeof *n);
  n->pl = *pl;
  n->bd = bd;
  proto_parser_init(&n->rx);
  n->card_err = store_open(&n->store, bd);
  if (n->card_err) n->store = NULL;
}

void node_feed(struct pifs_node *n, const uint8_t *data, uint32_t len) {
  n->bytes_in += len;
  while (len) {
    uint32_t k = proto_feed(&n->rx, data, len);
    data += k;
    len -= k;
    struct proto_frame f;
    int ev;
    while ((ev = proto_next(&n->rx, &f))) {
      if (f.flags & PROTO_F_RESP) continue; /* an echo of our own frames: ignore */
      if (ev == PROTO_FRAME) {
        n->frames_ok++;
        handle(n, &f);
      } else {
        n->frames_bad++;
        if (ev == PROTO_BADCRC) n->naks++;
        st32(RP, (uint32_t)PIFS_EPROTO);
        st32(RP + 4, (uint32_t)ev);
        send(n, ev == PROTO_BADCRC ? OP_NAK : f.op, f.reqid, 8);
      }
    }
  }
}

void node_idle(struct pifs_node *n) {
  if (proto_idle(&n->rx)) n->frames_bad++;
}

int node_partial(const struct pifs_node *n) { return proto_partial(&n->rx); }

void node_close(struct pifs_node *n) {
  store_close(n->store);
  n->store = NULL;
}
