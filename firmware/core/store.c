/* Chunk store: superblocks, log, allocator, chunks and the metadata journal.
 * Layout and record formats are specified byte by byte in docs/SPEC.md. */
#include "store.h"

#include <stdlib.h>
#include <string.h>

#include "crc32c.h"
#include "sha256.h"

#define SB_MAGIC "PIFSSTOR"
#define SB_VERSION 1u
#define REC_MAGIC 0x474F4C50u /* "PLOG" */
#define REC_HDR 24u
#define REC_PUT 1u
#define REC_DEL 2u
#define REC_JOURNAL 3u
#define REC_TRIM 4u /* body: u64 journal offset; the journal before it is forgotten */
#define LOG_START 2u
#define MAX_EXTENTS 56u /* a PUT record (24 + 40 + 8 * 56 bytes) stays within one sector */
#define MIN_STORE_SECTORS 1024u /* 512 KiB: two 64-sector log halves and some data */
#define VERIFIED_CACHE 4

struct extent {
  uint32_t start, count; /* sectors, relative to the start of STORE.DAT */
};

struct chunk {
  uint8_t id[32];
  uint32_t size;
  uint16_t next;
  uint8_t used; /* 0 empty slot, 1 live */
  struct extent *ext;
};

struct pending {
  int used;
  uint32_t handle;
  uint64_t last_use;
  uint8_t id[32];
  uint32_t size, have;
  uint16_t next;
  struct extent ext[MAX_EXTENTS];
  uint8_t part[PIFS_SECTOR]; /* the not yet written tail sector */
  /* Data received past a gap: byte at offset o sits at ahead[o % PIFS_PUT_AHEAD];
   * runs [lo, hi) sorted, disjoint, all within [have, have + PIFS_PUT_AHEAD). */
  uint8_t ahead[PIFS_PUT_AHEAD];
  struct { uint32_t lo, hi; } run[PIFS_PUT_RANGES];
  int nrun;
};

struct jrec {
  uint64_t offset; /* journal byte offset of the record's first byte */
  uint32_t sector; /* where the record lies in the log (store-relative) */
  uint32_t len;
};

struct pifs_store {
  struct pifs_bdev *bd;
  struct fat32_vol vol;
  uint64_t lba; /* absolute first sector of STORE.DAT */
  uint32_t sectors;
  /* superblock state */
  uint8_t cluster_id[16];
  uint32_t node_id, generation, epoch, active, log_half;
  uint32_t max_epoch; /* highest epoch any log record may carry (reserved before use) */
  /* log */
  uint32_t head; /* next free sector, relative to the active half */
  uint32_t seq;  /* sequence number of the next record */
  /* allocator */
  uint32_t data_start; /* first data sector (store-relative) */
  uint32_t data_sectors;
  uint8_t *bitmap; /* one bit per data sector: 1 = used */
  uint32_t free_sectors;
  uint32_t cursor; /* next-fit allocation cursor (index into data region) */
  /* chunk table: open addressing, linear probing */
  struct chunk *tab;
  uint32_t tab_cap, nchunks;
  /* journal index */
  struct jrec *jr;
  uint32_t njr, jr_cap;
  uint64_t journal_start; /* first journal byte still held (absolute offset) */
  uint64_t journal_len;   /* absolute offset of the journal's end */
  /* puts in progress */
  struct pending pend[PIFS_MAX_PENDING];
  uint32_t next_handle;
  uint64_t clock;
  /* recently verified chunks */
  uint8_t verified[VERIFIED_CACHE][32];
  int nverified_next;
  uint8_t recbuf[REC_HDR + PIFS_MAX_JOURNAL_ENTRY + PIFS_SECTOR];
  uint8_t secbuf[16 * PIFS_SECTOR];
};

/* ---- block I/O (store-relative sectors) ---- */

static int rd(struct pifs_store *s, uint32_t sec, uint32_t n, void *buf) {
  if ((uint64_t)sec + n > s->sectors) return PIFS_ECORRUPT;
  return s->bd->read(s->bd->ctx, s->lba + sec, n, buf);
}

static int wr(struct pifs_store *s, uint32_t sec, uint32_t n, const void *buf) {
  if ((uint64_t)sec + n > s->sectors) return PIFS_ECORRUPT;
  return s->bd->write(s->bd->ctx, s->lba + sec, n, buf);
}

static int flush(struct pifs_store *s) { return s->bd->flush ? s->bd->flush(s->bd->ctx) : 0; }

/* ---- bitmap ---- */

static int bit_get(struct pifs_store *s, uint32_t i) { return (s->bitmap[i >> 3] >> (i & 7)) & 1; }

static void mark(struct pifs_store *s, const struct extent *e, uint32_t n, int used) {
  for (uint32_t k = 0; k < n; k++) {
    for (uint32_t j = 0; j < e[k].count; j++) {
      uint32_t i = e[k].start - s->data_start + j;
      uint8_t m = (uint8_t)(1u << (i & 7));
      if (used && !(s->bitmap[i >> 3] & m)) {
        s->bitmap[i >> 3] |= m;
        s->free_sectors--;
      } else if (!used && (s->bitmap[i >> 3] & m)) {
        s->bitmap[i >> 3] &= (uint8_t)~m;
        s->free_sectors++;
      }
    }
  }
}

/* Next-fit: the first run of free sectors from the cursor on; several extents
 * when no single run is large enough. */
static int alloc(struct pifs_store *s, uint32_t need, struct extent *ext, uint16_t *next) {
  if (need > s->free_sectors) return PIFS_ENOSPC;
  uint32_t n = s->data_sectors, got = 0, scanned = 0;
  uint16_t ne = 0;
  uint32_t i = s->cursor % (n ? n : 1);
  /* First look for one run big enough. */
  uint32_t run_start = 0, run = 0;
  for (scanned = 0; scanned < n; scanned++) {
    uint32_t k = (i + scanned) % n;
    if (k == 0) run = 0;
    if (!bit_get(s, k)) {
      if (run == 0) run_start = k;
      if (++run == need) {
        ext[0].start = s->data_start + run_start;
        ext[0].count = need;
        *next = 1;
        s->cursor = run_start + need;
        mark(s, ext, 1, 1);
        return 0;
      }
    } else {
      run = 0;
    }
  }
  /* Fragmented: gather runs in order. */
  run = 0;
  for (scanned = 0; scanned < n && got < need; scanned++) {
    uint32_t k = (i + scanned) % n;
    int free_here = !bit_get(s, k);
    if (free_here && run > 0 && k == run_start + run) {
      run++;
    } else if (free_here) {
      if (run > 0) {
        if (ne == MAX_EXTENTS) return PIFS_ENOSPC;
        ext[ne].start = s->data_start + run_start;
        ext[ne++].count = run;
      }
      run_start = k;
      run = 1;
    }
    if (free_here) got++;
  }
  if (got < need) return PIFS_ENOSPC;
  if (run > 0) {
    if (ne == MAX_EXTENTS) return PIFS_ENOSPC;
    ext[ne].start = s->data_start + run_start;
    ext[ne++].count = run;
  }
  *next = ne;
  s->cursor = run_start + run;
  mark(s, ext, ne, 1);
  return 0;
}

/* ---- chunk table ---- */

static uint32_t id_hash(const uint8_t id[32]) { return ld32(id); }

static struct chunk *find(struct pifs_store *s, const uint8_t id[32]) {
  if (!s->tab_cap) return NULL;
  uint32_t m = s->tab_cap - 1;
  for (uint32_t i = id_hash(id) & m;; i = (i + 1) & m) {
    struct chunk *c = &s->tab[i];
    if (!c->used) return NULL;
    if (!memcmp(c->id, id, 32)) return c;
  }
}

static int tab_insert_raw(struct chunk *tab, uint32_t cap, const struct chunk *c) {
  uint32_t m = cap - 1;
  for (uint32_t i = id_hash(c->id) & m;; i = (i + 1) & m) {
    if (!tab[i].used) {
      tab[i] = *c;
      return 0;
    }
  }
}

static int tab_grow(struct pifs_store *s) {
  uint32_t cap = s->tab_cap ? s->tab_cap * 2 : 1024;
  struct chunk *t = calloc(cap, sizeof *t);
  if (!t) return PIFS_ENOMEM;
  for (uint32_t i = 0; i < s->tab_cap; i++)
    if (s->tab[i].used) tab_insert_raw(t, cap, &s->tab[i]);
  free(s->tab);
  s->tab = t;
  s->tab_cap = cap;
  return 0;
}

static int tab_add(struct pifs_store *s, const uint8_t id[32], uint32_t size, const struct extent *e,
                   uint16_t n) {
  if ((s->nchunks + 1) * 4 > s->tab_cap * 3) {
    int err = tab_grow(s);
    if (err) return err;
  }
  struct chunk c;
  memset(&c, 0, sizeof c);
  memcpy(c.id, id, 32);
  c.size = size;
  c.next = n;
  c.used = 1;
  c.ext = malloc(n * sizeof *e);
  if (!c.ext) return PIFS_ENOMEM;
  memcpy(c.ext, e, n * sizeof *e);
  tab_insert_raw(s->tab, s->tab_cap, &c);
  s->nchunks++;
  return 0;
}

/* Removes by backward-shift deletion, so no tombstones are needed. */
static void tab_remove(struct pifs_store *s, struct chunk *c) {
  uint32_t m = s->tab_cap - 1;
  uint32_t i = (uint32_t)(c - s->tab);
  free(c->ext);
  s->tab[i].used = 0;
  for (uint32_t j = (i + 1) & m; s->tab[j].used; j = (j + 1) & m) {
    uint32_t home = id_hash(s->tab[j].id) & m;
    /* Move j into the hole at i when its home is not in (i, j]. */
    int in_range = (i <= j) ? (home > i && home <= j) : (home > i || home <= j);
    if (!in_range) {
      s->tab[i] = s->tab[j];
      s->tab[j].used = 0;
      i = j;
    }
  }
  s->nchunks--;
}

static int verified_has(struct pifs_store *s, const uint8_t id[32]) {
  for (int i = 0; i < VERIFIED_CACHE; i++)
    if (!memcmp(s->verified[i], id, 32)) return 1;
  return 0;
}

static void verified_forget(struct pifs_store *s, const uint8_t id[32]) {
  for (int i = 0; i < VERIFIED_CACHE; i++)
    if (!memcmp(s->verified[i], id, 32)) memset(s->verified[i], 0, 32);
}

/* ---- superblocks ---- */

static int sb_write(struct pifs_store *s) {
  uint8_t *b = s->secbuf;
  memset(b, 0, PIFS_SECTOR);
  memcpy(b, SB_MAGIC, 8);
  st32(b + 8, SB_VERSION);
  st32(b + 12, s->generation);
  memcpy(b + 16, s->cluster_id, 16);
  st32(b + 32, s->node_id);
  st32(b + 36, s->sectors);
  st32(b + 40, LOG_START);
  st32(b + 44, s->log_half);
  st32(b + 48, s->active);
  st32(b + 52, s->epoch);
  st32(b + 56, s->max_epoch);
  st32(b + 508, crc32c(b, 508));
  int err = wr(s, s->generation & 1u, 1, b);
  if (err) return err;
  return flush(s);
}

/* Returns 1 if sector b holds a valid superblock. */
static int sb_valid(const uint8_t *b) {
  return !memcmp(b, SB_MAGIC, 8) && ld32(b + 508) == crc32c(b, 508) && ld32(b + 8) == SB_VERSION;
}

/* Loads superblock b; 0 if it is consistent with the file it lies in. */
static int sb_load(struct pifs_store *s, const uint8_t *p) {
  s->generation = ld32(p + 12);
  memcpy(s->cluster_id, p + 16, 16);
  s->node_id = ld32(p + 32);
  uint32_t total = ld32(p + 36);
  s->log_half = ld32(p + 44);
  s->active = ld32(p + 48);
  s->epoch = ld32(p + 52);
  s->max_epoch = ld32(p + 56);
  if (s->max_epoch < s->epoch) s->max_epoch = s->epoch;
  /* STORE.DAT may have grown since the superblock was written: use the file. */
  if (ld32(p + 40) != LOG_START || s->active > 1 || s->log_half < 8 || total > s->sectors ||
      (uint64_t)LOG_START + 2ull * s->log_half >= total)
    return PIFS_ECORRUPT;
  return 0;
}

static int sb_read(struct pifs_store *s) {
  uint8_t a[PIFS_SECTOR], b[PIFS_SECTOR];
  int err = rd(s, 0, 1, a);
  if (!err) err = rd(s, 1, 1, b);
  if (err) return err;
  int va = sb_valid(a), vb = sb_valid(b);
  if (!va && !vb) return PIFS_EUNFORMATTED;
  const uint8_t *first = (va && (!vb || ld32(a + 12) >= ld32(b + 12))) ? a : b;
  const uint8_t *second = first == a ? (vb ? b : NULL) : (va ? a : NULL);
  /* The newest consistent one wins; an inconsistent newest falls back. */
  if (!sb_load(s, first)) return 0;
  if (second && !sb_load(s, second)) return 0;
  return PIFS_ECORRUPT;
}

/* ---- log records ---- */

static uint32_t half_base(struct pifs_store *s, uint32_t half) { return LOG_START + half * s->log_half; }

static uint32_t rec_sectors(uint32_t body) { return (REC_HDR + body + PIFS_SECTOR - 1) / PIFS_SECTOR; }

/* Writes a record of `type` with the body already placed at recbuf+REC_HDR
 * into `half` at *pos, with sequence *seq, then flushes. */
static int rec_write(struct pifs_store *s, uint32_t half, uint32_t epoch, uint32_t *pos,
                     uint32_t *seq, uint32_t type, uint32_t body) {
  uint32_t n = rec_sectors(body);
  if (*pos + n > s->log_half) return PIFS_ENOSPC;
  uint8_t *r = s->recbuf;
  st32(r, REC_MAGIC);
  r[4] = (uint8_t)type;
  r[5] = 0;
  st16(r + 6, (uint16_t)n);
  st32(r + 8, epoch);
  st32(r + 12, *seq);
  st32(r + 16, body);
  uint32_t crc = crc32c_update(crc32c(r, 20), r + REC_HDR, body);
  st32(r + 20, crc);
  memset(r + REC_HDR + body, 0, n * PIFS_SECTOR - REC_HDR - body);
  int err = wr(s, half_base(s, half) + *pos, n, r);
  if (!err) err = flush(s);
  if (err) return err;
  *pos += n;
  (*seq)++;
  return 0;
}

static uint32_t put_body(uint8_t *b, const uint8_t id[32], uint32_t size, const struct extent *e,
                         uint16_t n) {
  memcpy(b, id, 32);
  st32(b + 32, size);
  st16(b + 36, n);
  st16(b + 38, 0);
  for (uint16_t i = 0; i < n; i++) {
    st32(b + 40 + 8 * i, e[i].start);
    st32(b + 44 + 8 * i, e[i].count);
  }
  return 40u + 8u * n;
}

static int jr_push(struct pifs_store *s, uint32_t sector, uint32_t len) {
  if (s->njr == s->jr_cap) {
    uint32_t cap = s->jr_cap ? s->jr_cap * 2 : 64;
    struct jrec *j = realloc(s->jr, cap * sizeof *j);
    if (!j) return PIFS_ENOMEM;
    s->jr = j;
    s->jr_cap = cap;
  }
  s->jr[s->njr].offset = s->journal_len;
  s->jr[s->njr].sector = sector;
  s->jr[s->njr].len = len;
  s->njr++;
  s->journal_len += len;
  return 0;
}

/* Forgets the journal before offset x (records ending at or before it); the
 * journal then starts at x and is at least x long. A record that straddles x
 * means x is not a record boundary: PIFS_EINVAL, nothing changed. */
static int jr_trim(struct pifs_store *s, uint64_t x) {
  if (x <= s->journal_start) return 0;
  uint32_t k = 0;
  while (k < s->njr && s->jr[k].offset + s->jr[k].len <= x) k++;
  if (k < s->njr && s->jr[k].offset < x) return PIFS_EINVAL;
  memmove(s->jr, s->jr + k, (size_t)(s->njr - k) * sizeof *s->jr);
  s->njr -= k;
  s->journal_start = x;
  if (s->journal_len < x) s->journal_len = x;
  return 0;
}

static int extents_valid(struct pifs_store *s, const struct extent *e, uint16_t n, uint32_t size) {
  uint64_t total = 0;
  for (uint16_t i = 0; i < n; i++) {
    if (e[i].count == 0 || e[i].start < s->data_start ||
        (uint64_t)e[i].start + e[i].count > s->sectors)
      return 0;
    total += e[i].count;
  }
  return total == (size + PIFS_SECTOR - 1) / PIFS_SECTOR;
}

/* Replays the active half; stops at the first record that is not valid. */
static int replay(struct pifs_store *s) {
  uint32_t base = half_base(s, s->active);
  s->head = 0;
  s->seq = 0;
  while (s->head < s->log_half) {
    uint8_t *r = s->recbuf;
    int err = rd(s, base + s->head, 1, r);
    if (err) return err;
    if (ld32(r) != REC_MAGIC || ld32(r + 8) != s->epoch || ld32(r + 12) != s->seq) break;
    uint32_t n = ld16(r + 6), body = ld32(r + 16);
    if (n == 0 || s->head + n > s->log_half || body > PIFS_MAX_JOURNAL_ENTRY ||
        rec_sectors(body) != n)
      break;
    if (n > 1 && (err = rd(s, base + s->head + 1, n - 1, r + PIFS_SECTOR))) return err;
    if (ld32(r + 20) != crc32c_update(crc32c(r, 20), r + REC_HDR, body)) break;
    const uint8_t *b = r + REC_HDR;
    switch (r[4]) {
    case REC_PUT: {
      uint16_t ne = ld16(b + 36);
      struct extent e[MAX_EXTENTS];
      if (body < 40 || ne > MAX_EXTENTS || body != 40u + 8u * ne) return PIFS_ECORRUPT;
      for (uint16_t i = 0; i < ne; i++) {
        e[i].start = ld32(b + 40 + 8 * i);
        e[i].count = ld32(b + 44 + 8 * i);
      }
      uint32_t size = ld32(b + 32);
      if (!extents_valid(s, e, ne, size)) return PIFS_ECORRUPT;
      struct chunk *old = find(s, b);
      if (old) { /* a later PUT of the same id replaces the earlier */
        mark(s, old->ext, old->next, 0);
        tab_remove(s, old);
      }
      if ((err = tab_add(s, b, size, e, ne))) return err;
      mark(s, e, ne, 1);
      break;
    }
    case REC_DEL: {
      if (body != 32) return PIFS_ECORRUPT;
      struct chunk *c = find(s, b);
      if (c) {
        mark(s, c->ext, c->next, 0);
        tab_remove(s, c);
      }
      break;
    }
    case REC_JOURNAL:
      if ((err = jr_push(s, base + s->head, body))) return err;
      break;
    case REC_TRIM:
      /* Written only at a record boundary (checked before it was written):
       * a straddled record means the log is damaged. */
      if (body != 8 || jr_trim(s, ld64(b))) return PIFS_ECORRUPT;
      break;
    default:
      return PIFS_ECORRUPT;
    }
    s->head += n;
    s->seq++;
  }
  return 0;
}

/* Writes every live record into the other half under a new epoch, then
 * switches the superblock to it. Until that superblock write the old half
 * stays authoritative, so a power cut at any point leaves a valid store.
 * The journal is written from `start` on (≥ journal_start, a record boundary
 * or past the end), preceded by a TRIM record when start > 0: compaction is
 * where a trim's space comes back. */
static int compact(struct pifs_store *s, uint64_t start) {
  /* The new epoch is reserved in the superblock before any record carries
   * it, so an interrupted compaction's records can never be mistaken for a
   * later one's (which gets a higher epoch still). */
  uint32_t half = s->active ^ 1u, epoch = s->max_epoch + 1, pos = 0, seq = 0;
  s->max_epoch = epoch;
  s->generation++;
  int err = sb_write(s);
  if (err) return err;
  if (start > 0) {
    st64(s->recbuf + REC_HDR, start);
    if ((err = rec_write(s, half, epoch, &pos, &seq, REC_TRIM, 8))) return err;
  }
  for (uint32_t i = 0; i < s->tab_cap; i++) {
    struct chunk *c = &s->tab[i];
    if (!c->used) continue;
    uint32_t body = put_body(s->recbuf + REC_HDR, c->id, c->size, c->ext, c->next);
    if ((err = rec_write(s, half, epoch, &pos, &seq, REC_PUT, body))) return err;
  }
  /* Journal records from start on: copy each through recbuf, remembering
   * new positions. */
  uint32_t first = 0;
  while (first < s->njr && s->jr[first].offset < start) first++;
  uint32_t *newpos = NULL;
  if (s->njr && !(newpos = malloc(s->njr * sizeof *newpos))) return PIFS_ENOMEM;
  for (uint32_t i = first; i < s->njr; i++) {
    uint32_t n = rec_sectors(s->jr[i].len);
    if ((err = rd(s, s->jr[i].sector, n, s->recbuf))) goto out;
    newpos[i] = half_base(s, half) + pos;
    if ((err = rec_write(s, half, epoch, &pos, &seq, REC_JOURNAL, s->jr[i].len))) goto out;
  }
  s->generation++;
  s->active = half;
  s->epoch = epoch;
  if ((err = sb_write(s))) goto out;
  for (uint32_t i = first; i < s->njr; i++) s->jr[i].sector = newpos[i];
  jr_trim(s, start); /* cannot fail: start is a boundary (callers check) */
  s->head = pos;
  s->seq = seq;
out:
  free(newpos);
  return err;
}

int store_compact(struct pifs_store *s) { return compact(s, s->journal_start); }

/* Appends a record to the active log, compacting first when it is full. */
static int append(struct pifs_store *s, uint32_t type, uint32_t body, uint32_t *at) {
  if (s->head + rec_sectors(body) > s->log_half) {
    /* Compaction reuses recbuf: keep the body aside. */
    uint8_t *save = malloc(body ? body : 1);
    if (!save) return PIFS_ENOMEM;
    memcpy(save, s->recbuf + REC_HDR, body);
    int err = store_compact(s);
    memcpy(s->recbuf + REC_HDR, save, body);
    free(save);
    if (err) return err;
    if (s->head + rec_sectors(body) > s->log_half) return PIFS_ENOSPC;
  }
  if (at) *at = half_base(s, s->active) + s->head;
  return rec_write(s, s->active, s->epoch, &s->head, &s->seq, type, body);
}

/* ---- mount / format ---- */

static int setup(struct pifs_store *s) {
  if (s->sectors < 64) return PIFS_ENOSPC;
  s->data_start = LOG_START + 2 * s->log_half;
  if (s->data_start >= s->sectors) return PIFS_ECORRUPT;
  s->data_sectors = s->sectors - s->data_start;
  free(s->bitmap);
  s->bitmap = calloc((s->data_sectors + 7) / 8, 1);
  if (!s->bitmap) return PIFS_ENOMEM;
  s->free_sectors = s->data_sectors;
  return 0;
}

static int store_alloc(struct pifs_store **out, struct pifs_bdev *bd) {
  struct pifs_store *s = calloc(1, sizeof *s);
  if (!s) return PIFS_ENOMEM;
  s->bd = bd;
  s->next_handle = 1;
  int err = fat32_mount(&s->vol, bd);
  if (err) {
    free(s);
    return err;
  }
  *out = s;
  return 0;
}

static int locate(struct pifs_store *s) {
  uint64_t lba, n;
  int err = fat32_find_store(&s->vol, &lba, &n);
  if (err == PIFS_ENOENT) return PIFS_EUNFORMATTED;
  if (err) return err;
  if (n > 0xFFFFFFFFu) n = 0xFFFFFFFFu;
  s->lba = lba;
  s->sectors = (uint32_t)n;
  return 0;
}

int store_open(struct pifs_store **out, struct pifs_bdev *bd) {
  struct pifs_store *s;
  int err = store_alloc(&s, bd);
  if (err) return err;
  if (!(err = locate(s)) && !(err = sb_read(s)) && !(err = setup(s))) err = replay(s);
  if (err) {
    store_close(s);
    return err;
  }
  *out = s;
  return 0;
}

int store_format(struct pifs_store **out, struct pifs_bdev *bd, const struct pifs_format_opts *o) {
  struct pifs_store *s;
  int err = store_alloc(&s, bd);
  if (err) return err;
  s->vol.now_date = o->fat_date;
  s->vol.now_time = o->fat_time;
  s->vol.min_store_sectors = MIN_STORE_SECTORS;
  if (o->size_sectors && o->size_sectors < MIN_STORE_SECTORS) {
    store_close(s);
    return PIFS_EINVAL;
  }
  err = locate(s);
  if (err == PIFS_EUNFORMATTED) {
    uint64_t lba, n;
    err = fat32_create_store(&s->vol, o->size_sectors, o->reserve_sectors, &lba, &n);
    if (!err) {
      s->lba = lba;
      s->sectors = n > 0xFFFFFFFFu ? 0xFFFFFFFFu : (uint32_t)n;
      s->generation = 0;
      /* Sectors of a new file may hold an old store's records: a random
       * first epoch keeps them stale. */
      s->max_epoch = o->nonce;
    }
  } else if (!err) {
    /* A store exists. Same cluster: formatting again changes nothing (the
     * store is opened as it is). Another cluster or damaged superblocks:
     * refused unless forced, and then re-initialised under a new epoch. */
    int r = sb_read(s);
    if (!r && !memcmp(s->cluster_id, o->cluster_id, 16) && !o->force) {
      if (!(err = setup(s))) err = replay(s);
      if (err) {
        store_close(s);
        return err;
      }
      *out = s;
      return 0;
    }
    if (!r && !o->force) err = PIFS_EWRONGCLUSTER;
    else if (r && r != PIFS_EUNFORMATTED && r != PIFS_ECORRUPT) err = r;
    else if (r && !o->force) err = PIFS_ECORRUPT;
    if (r) {
      s->generation = 0;
      s->max_epoch = o->nonce;
    }
  }
  if (err) {
    store_close(s);
    return err;
  }
  memcpy(s->cluster_id, o->cluster_id, 16);
  s->node_id = o->node_id;
  s->log_half = s->sectors / 64;
  if (s->log_half < 64) s->log_half = 64;
  s->active = 0;
  /* A new epoch makes every record already on the card stale. */
  if (s->sectors < MIN_STORE_SECTORS) {
    store_close(s);
    return PIFS_ENOSPC;
  }
  s->epoch = ++s->max_epoch;
  s->generation += 1;
  if ((err = setup(s)) || (err = sb_write(s))) {
    store_close(s);
    return err;
  }
  /* Both superblock slots must agree so an old one never wins: write twice. */
  s->generation += 1;
  if ((err = sb_write(s))) {
    store_close(s);
    return err;
  }
  *out = s;
  return 0;
}

int store_grow(struct pifs_store *s, uint64_t want_sectors, uint64_t reserve_sectors) {
  uint64_t n = 0;
  int err = fat32_grow_store(&s->vol, want_sectors, reserve_sectors, &n);
  if (err) return err;
  if (n > 0xFFFFFFFFu) n = 0xFFFFFFFFu;
  if (n <= s->sectors) return 0;
  uint32_t old_data = s->data_sectors, data = (uint32_t)n - s->data_start;
  uint8_t *bm = realloc(s->bitmap, (data + 7) / 8);
  if (!bm) return PIFS_ENOMEM; /* the file grew; the next mount will use it */
  /* Bits past the old end (in its last byte, and the new bytes) are free. */
  for (uint32_t i = old_data; i < data && (i & 7); i++) bm[i >> 3] &= (uint8_t) ~(1u << (i & 7));
  if ((data + 7) / 8 > (old_data + 7) / 8)
    memset(bm + (old_data + 7) / 8, 0, (data + 7) / 8 - (old_data + 7) / 8);
  s->bitmap = bm;
  s->sectors = (uint32_t)n;
  s->data_sectors = data;
  s->free_sectors += data - old_data;
  s->generation++;
  return sb_write(s);
}

void store_close(struct pifs_store *s) {
  if (!s) return;
  for (uint32_t i = 0; i < s->tab_cap; i++)
    if (s->tab[i].used) free(s->tab[i].ext);
  free(s->tab);
  free(s->jr);
  free(s->bitmap);
  free(s);
}

void store_info(struct pifs_store *s, struct pifs_store_info *info) {
  memset(info, 0, sizeof *info);
  memcpy(info->cluster_id, s->cluster_id, 16);
  info->node_id = s->node_id;
  info->generation = s->generation;
  info->epoch = s->epoch;
  info->store_lba = s->lba;
  info->store_sectors = s->sectors;
  info->data_sectors = s->data_sectors;
  info->free_sectors = s->free_sectors;
  info->chunks = s->nchunks;
  info->journal_len = s->journal_len;
  info->journal_start = s->journal_start;
  info->log_used = s->head;
  info->log_half = s->log_half;
}

/* ---- chunks ---- */

/* Maps logical sector i of a chunk to a physical sector and the number of
 * contiguous sectors from there. */
static uint32_t phys(const struct extent *e, uint16_t n, uint32_t i, uint32_t *run) {
  for (uint16_t k = 0; k < n; k++) {
    if (i < e[k].count) {
      *run = e[k].count - i;
      return e[k].start + i;
    }
    i -= e[k].count;
  }
  *run = 0;
  return 0;
}

/* Reads sectors [first, first+count) of a chunk into buf. */
static int read_sectors(struct pifs_store *s, const struct extent *e, uint16_t n, uint32_t first,
                        uint32_t count, uint8_t *buf) {
  while (count) {
    uint32_t run, p = phys(e, n, first, &run);
    if (!run) return PIFS_ECORRUPT;
    if (run > count) run = count;
    int err = rd(s, p, run, buf);
    if (err) return err;
    first += run;
    count -= run;
    buf += run * PIFS_SECTOR;
  }
  return 0;
}

/* Hashes a chunk's bytes as they are on the card and compares with id. */
static int verify(struct pifs_store *s, const uint8_t id[32], uint32_t size, const struct extent *e,
                  uint16_t n) {
  struct sha256 h;
  sha256_init(&h);
  uint32_t secs = (size + PIFS_SECTOR - 1) / PIFS_SECTOR, per = sizeof s->secbuf / PIFS_SECTOR;
  for (uint32_t i = 0; i < secs; i += per) {
    uint32_t k = secs - i < per ? secs - i : per;
    int err = read_sectors(s, e, n, i, k, s->secbuf);
    if (err) return err;
    uint32_t bytes = k * PIFS_SECTOR;
    if ((uint64_t)i * PIFS_SECTOR + bytes > size) bytes = size - i * PIFS_SECTOR;
    sha256_update(&h, s->secbuf, bytes);
  }
  uint8_t got[32];
  sha256_final(&h, got);
  return memcmp(got, id, 32) ? PIFS_EBADHASH : 0;
}

static struct pending *pending_by_handle(struct pifs_store *s, uint32_t handle) {
  for (int i = 0; i < PIFS_MAX_PENDING; i++)
    if (s->pend[i].used && s->pend[i].handle == handle) return &s->pend[i];
  return NULL;
}

static void pending_drop(struct pifs_store *s, struct pending *p) {
  mark(s, p->ext, p->next, 0);
  p->used = 0;
}

int store_put_begin(struct pifs_store *s, const uint8_t id[32], uint32_t size, uint32_t *handle,
                    uint32_t *have) {
  if (size == 0 || size > PIFS_MAX_CHUNK) return PIFS_EINVAL;
  if (find(s, id)) {
    *have = size;
    *handle = 0;
    return PIFS_EEXIST;
  }
  struct pending *free_slot = NULL, *lru = NULL;
  for (int i = 0; i < PIFS_MAX_PENDING; i++) {
    struct pending *p = &s->pend[i];
    if (p->used && !memcmp(p->id, id, 32)) {
      if (p->size != size) { /* same id, other size: the old one was wrong */
        pending_drop(s, p);
        free_slot = p;
        break;
      }
      p->last_use = ++s->clock;
      *handle = p->handle;
      *have = p->have;
      return 0;
    }
    if (!p->used && !free_slot) free_slot = p;
    if (p->used && (!lru || p->last_use < lru->last_use)) lru = p;
  }
  if (!free_slot) { /* evict the put abandoned longest ago */
    pending_drop(s, lru);
    free_slot = lru;
  }
  struct pending *p = free_slot;
  memset(p, 0, sizeof *p);
  int err = alloc(s, (size + PIFS_SECTOR - 1) / PIFS_SECTOR, p->ext, &p->next);
  if (err) return err;
  p->used = 1;
  memcpy(p->id, id, 32);
  p->size = size;
  p->handle = s->next_handle++;
  if (!s->next_handle) s->next_handle = 1;
  p->last_use = ++s->clock;
  *handle = p->handle;
  *have = 0;
  return 0;
}

/* Writes n bytes at p->have (in order) through to the card. */
static int put_in_order(struct pifs_store *s, struct pending *p, const uint8_t *d, uint32_t n) {
  while (n) {
    uint32_t in = p->have % PIFS_SECTOR, lsec = p->have / PIFS_SECTOR, run;
    uint32_t ps = phys(p->ext, p->next, lsec, &run);
    if (!run) return PIFS_ECORRUPT;
    if (in == 0 && n >= PIFS_SECTOR) { /* whole sectors straight from the frame */
      uint32_t k = n / PIFS_SECTOR;
      if (k > run) k = run;
      int err = wr(s, ps, k, d);
      if (err) return err;
      p->have += k * PIFS_SECTOR;
      d += k * PIFS_SECTOR;
      n -= k * PIFS_SECTOR;
    } else { /* a partial sector gathers in p->part */
      uint32_t k = PIFS_SECTOR - in;
      if (k > n) k = n;
      memcpy(p->part + in, d, k);
      if (in + k == PIFS_SECTOR || p->have + k == p->size) {
        memset(p->part + in + k, 0, PIFS_SECTOR - in - k);
        int err = wr(s, ps, 1, p->part);
        if (err) return err;
      }
      p->have += k;
      d += k;
      n -= k;
    }
  }
  return 0;
}

/* Holds [off, off+n) past the gap at p->have. Returns PIFS_ERANGE when it
 * does not fit (too far ahead, or too many separate runs). */
static int hold_ahead(struct pending *p, uint32_t off, const uint8_t *d, uint32_t n) {
  if ((uint64_t)off + n > (uint64_t)p->have + PIFS_PUT_AHEAD) return PIFS_ERANGE;
  /* the runs this one touches or overlaps merge with it */
  uint32_t lo = off, hi = off + n;
  int i = 0;
  while (i < p->nrun && p->run[i].hi < lo) i++;
  int j = i;
  while (j < p->nrun && p->run[j].lo <= hi) {
    if (p->run[j].lo < lo) lo = p->run[j].lo;
    if (p->run[j].hi > hi) hi = p->run[j].hi;
    j++;
  }
  int count = p->nrun - (j - i) + 1;
  if (count > PIFS_PUT_RANGES) return PIFS_ERANGE;
  for (uint32_t k = 0; k < n;) { /* into the ring, in at most two pieces */
    uint32_t at = (off + k) % PIFS_PUT_AHEAD, m = PIFS_PUT_AHEAD - at;
    if (m > n - k) m = n - k;
    memcpy(p->ahead + at, d + k, m);
    k += m;
  }
  memmove(&p->run[i + 1], &p->run[j], (size_t)(p->nrun - j) * sizeof p->run[0]);
  p->run[i].lo = lo;
  p->run[i].hi = hi;
  p->nrun = count;
  return 0;
}

/* After p->have moved: writes the held runs it reached, drops what it passed. */
static int drain_ahead(struct pifs_store *s, struct pending *p) {
  while (p->nrun && p->run[0].lo <= p->have) {
    while (p->run[0].hi > p->have) {
      uint32_t at = p->have % PIFS_PUT_AHEAD, m = PIFS_PUT_AHEAD - at;
      if (m > p->run[0].hi - p->have) m = p->run[0].hi - p->have;
      int err = put_in_order(s, p, p->ahead + at, m);
      if (err) return err;
    }
    p->nrun--;
    memmove(&p->run[0], &p->run[1], (size_t)p->nrun * sizeof p->run[0]);
  }
  return 0;
}

int store_put_data(struct pifs_store *s, uint32_t handle, uint32_t offset, const void *data,
                   uint32_t n, uint32_t *have) {
  struct pending *p = pending_by_handle(s, handle);
  if (!p) return PIFS_ENOENT;
  p->last_use = ++s->clock;
  *have = p->have;
  if ((uint64_t)offset + n > p->size) return PIFS_EINVAL;
  if (offset + n <= p->have) return 0; /* a repeat: already held */
  const uint8_t *d = data;
  if (offset < p->have) { /* overlaps what is held: keep the new part */
    d += p->have - offset;
    n -= p->have - offset;
    offset = p->have;
  }
  int err = offset == p->have ? put_in_order(s, p, d, n) : hold_ahead(p, offset, d, n);
  if (!err) err = drain_ahead(s, p);
  *have = p->have;
  return err;
}

int store_put_commit(struct pifs_store *s, uint32_t handle) {
  struct pending *p = pending_by_handle(s, handle);
  if (!p) return PIFS_ENOENT;
  if (p->have != p->size) return PIFS_ERANGE;
  int err = flush(s);
  if (err) return err;
  err = verify(s, p->id, p->size, p->ext, p->next);
  if (err) {
    pending_drop(s, p);
    return err;
  }
  uint32_t body = put_body(s->recbuf + REC_HDR, p->id, p->size, p->ext, p->next);
  if ((err = append(s, REC_PUT, body, NULL))) return err;
  /* Committed: the sectors move from the pending put to the chunk. */
  if ((err = tab_add(s, p->id, p->size, p->ext, p->next))) return err;
  p->used = 0;
  return 0;
}

int store_get(struct pifs_store *s, const uint8_t id[32], uint32_t offset, void *buf, uint32_t len,
              uint32_t *size) {
  struct chunk *c = find(s, id);
  if (!c) return PIFS_ENOENT;
  *size = c->size;
  if (offset > c->size || len > c->size - offset) return PIFS_ERANGE;
  if (!verified_has(s, id)) {
    int err = verify(s, c->id, c->size, c->ext, c->next);
    if (err) return err;
    memcpy(s->verified[s->nverified_next], id, 32);
    s->nverified_next = (s->nverified_next + 1) % VERIFIED_CACHE;
  }
  uint8_t *out = buf;
  while (len) {
    uint32_t lsec = offset / PIFS_SECTOR, in = offset % PIFS_SECTOR;
    uint32_t secs = (in + len + PIFS_SECTOR - 1) / PIFS_SECTOR;
    uint32_t per = sizeof s->secbuf / PIFS_SECTOR;
    if (secs > per) secs = per;
    int err = read_sectors(s, c->ext, c->next, lsec, secs, s->secbuf);
    if (err) return err;
    uint32_t k = secs * PIFS_SECTOR - in;
    if (k > len) k = len;
    memcpy(out, s->secbuf + in, k);
    out += k;
    offset += k;
    len -= k;
  }
  return 0;
}

int store_has(struct pifs_store *s, const uint8_t id[32], uint32_t *size) {
  struct chunk *c = find(s, id);
  if (!c) return PIFS_ENOENT;
  if (size) *size = c->size;
  return 0;
}

int store_delete(struct pifs_store *s, const uint8_t id[32]) {
  struct chunk *c = find(s, id);
  if (!c) return PIFS_ENOENT;
  memcpy(s->recbuf + REC_HDR, id, 32);
  int err = append(s, REC_DEL, 32, NULL);
  if (err) return err;
  c = find(s, id); /* compaction does not move entries, but be safe */
  verified_forget(s, id);
  mark(s, c->ext, c->next, 0);
  tab_remove(s, c);
  return 0;
}

int store_list(struct pifs_store *s, uint32_t *cursor, uint32_t max,
               void (*fn)(void *ctx, const uint8_t id[32], uint32_t size), void *ctx) {
  uint32_t i = *cursor, got = 0;
  for (; i < s->tab_cap && got < max; i++) {
    if (!s->tab[i].used) continue;
    fn(ctx, s->tab[i].id, s->tab[i].size);
    got++;
  }
  while (i < s->tab_cap && !s->tab[i].used) i++;
  *cursor = i >= s->tab_cap ? 0xFFFFFFFFu : i;
  return 0;
}

int store_scrub(struct pifs_store *s, uint32_t *cursor, uint32_t max, uint32_t *checked,
                void (*bad)(void *ctx, const uint8_t id[32], int err), void *ctx) {
  uint32_t i = *cursor, got = 0;
  for (; i < s->tab_cap && got < max; i++) {
    struct chunk *c = &s->tab[i];
    if (!c->used) continue;
    int err = verify(s, c->id, c->size, c->ext, c->next);
    if (err) {
      verified_forget(s, c->id);
      bad(ctx, c->id, err);
    }
    got++;
  }
  while (i < s->tab_cap && !s->tab[i].used) i++;
  *cursor = i >= s->tab_cap ? 0xFFFFFFFFu : i;
  *checked = got;
  return 0;
}

int store_journal_append(struct pifs_store *s, uint64_t expected_len, const void *data, uint32_t n,
                         uint64_t *len) {
  *len = s->journal_len;
  if (expected_len != s->journal_len) return PIFS_ECONFLICT;
  if (n == 0 || n > PIFS_MAX_JOURNAL_ENTRY) return PIFS_EINVAL;
  memcpy(s->recbuf + REC_HDR, data, n);
  uint32_t at;
  int err = append(s, REC_JOURNAL, n, &at);
  if (err) return err;
  err = jr_push(s, at, n);
  *len = s->journal_len;
  return err;
}

int store_journal_read(struct pifs_store *s, uint64_t offset, void *buf, uint32_t max, uint32_t *n,
                       uint64_t *len) {
  *len = s->journal_len;
  *n = 0;
  if (offset > s->journal_len || offset < s->journal_start) return PIFS_ERANGE;
  /* Binary search for the record holding offset. */
  uint32_t lo = 0, hi = s->njr;
  while (hi - lo > 1) {
    uint32_t mid = (lo + hi) / 2;
    if (s->jr[mid].offset <= offset) lo = mid;
    else hi = mid;
  }
  uint8_t *out = buf;
  for (uint32_t i = lo; i < s->njr && *n < max; i++) {
    struct jrec *j = &s->jr[i];
    if (offset >= j->offset + j->len) continue;
    int err = rd(s, j->sector, rec_sectors(j->len), s->recbuf);
    if (err) return err;
    uint32_t body = ld32(s->recbuf + 16);
    if (ld32(s->recbuf) != REC_MAGIC || body != j->len ||
        ld32(s->recbuf + 20) != crc32c_update(crc32c(s->recbuf, 20), s->recbuf + REC_HDR, body))
      return PIFS_ECORRUPT;
    uint32_t from = (uint32_t)(offset - j->offset), k = j->len - from;
    if (k > max - *n) k = max - *n;
    memcpy(out + *n, s->recbuf + REC_HDR + from, k);
    *n += k;
    offset += k;
  }
  return 0;
}

int store_journal_trim(struct pifs_store *s, uint64_t x, uint64_t *start, uint64_t *len) {
  int err = 0;
  if (x < s->journal_start) {
    err = PIFS_EINVAL;
  } else if (x > s->journal_start) {
    /* Refused unless x is a record boundary (or past the end). */
    uint32_t k = 0;
    while (k < s->njr && s->jr[k].offset + s->jr[k].len <= x) k++;
    if (k < s->njr && s->jr[k].offset < x) err = PIFS_EINVAL;
    else if (s->head + rec_sectors(8) > s->log_half) {
      /* No room for the record: compacting straight to the new start is the
       * trim, and leaves out the records it forgets (which may be what
       * filled the log). */
      err = compact(s, x);
    } else {
      st64(s->recbuf + REC_HDR, x);
      if (!(err = append(s, REC_TRIM, 8, NULL))) err = jr_trim(s, x);
    }
  }
  *start = s->journal_start;
  *len = s->journal_len;
  return err;
}
