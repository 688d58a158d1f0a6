/* The chunk store: put/get/delete, replay at mount, compaction, journal,
 * refusals, and power loss after every k-th sector write of a workload
 * (littlefs-style), checked after each remount. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "sha256.h"
#include "store.h"

#include "ramcard.h"

static void power_on(long budget) {
  card.dead = 0;
  card.budget = budget;
  card.writes = 0;
}

static struct pifs_format_opts fmt_opts(uint8_t cluster) {
  struct pifs_format_opts o;
  memset(&o, 0, sizeof o);
  memset(o.cluster_id, cluster, 16);
  o.node_id = 1;
  o.size_sectors = 16384; /* 8 MiB store: log halves of 256 sectors */
  o.nonce = 0x5eed0000u + cluster;
  return o;
}

static void fill(uint8_t *p, uint32_t n, uint32_t seed) {
  for (uint32_t i = 0; i < n; i++) {
    seed = seed * 1103515245u + 12345u;
    p[i] = (uint8_t)(seed >> 16);
  }
}

/* Puts a chunk in pieces of `step` bytes. */
static int put(struct pifs_store *s, const uint8_t *data, uint32_t n, uint32_t step, uint8_t id[32]) {
  sha256(data, n, id);
  uint32_t h, have;
  int err = store_put_begin(s, id, n, &h, &have);
  if (err) return err;
  while (have < n) {
    uint32_t k = n - have < step ? n - have : step;
    if ((err = store_put_data(s, h, have, data + have, k, &have))) return err;
  }
  return store_put_commit(s, h);
}

static int get_ok(struct pifs_store *s, const uint8_t id[32], const uint8_t *want, uint32_t n) {
  static uint8_t buf[1 << 20];
  uint32_t size = 0;
  if (store_get(s, id, 0, buf, n, &size)) return 0;
  return size == n && !memcmp(buf, want, n);
}

static uint64_t used_sectors(const uint32_t *sizes, int n) {
  uint64_t u = 0;
  for (int i = 0; i < n; i++) u += (sizes[i] + 511) / 512;
  return u;
}

static void reset_card(void) {
  memcpy(card.cur, card.base, card.sectors * 512);
  power_on(-1);
}

static void test_format_put_get_remount(void) {
  reset_card();
  struct pifs_store *s = NULL;
  struct pifs_format_opts o = fmt_opts(1);
  CHECK_EQ(store_open(&s, &bd), PIFS_EUNFORMATTED);
  CHECK_EQ(store_format(&s, &bd, &o), 0);
  static uint8_t d[3][300000];
  uint32_t sz[3] = {1, 513, 300000};
  uint8_t id[3][32];
  for (int i = 0; i < 3; i++) {
    fill(d[i], sz[i], (uint32_t)i + 1);
    CHECK_EQ(put(s, d[i], sz[i], i == 2 ? 4096 : 100, id[i]), 0);
  }
  struct pifs_store_info in;
  store_info(s, &in);
  CHECK_EQ(in.chunks, 3);
  CHECK_EQ(in.data_sectors - in.free_sectors, used_sectors(sz, 3));
  /* ranges */
  uint8_t buf[700];
  uint32_t size;
  CHECK_EQ(store_get(s, id[2], 1000, buf, 700, &size), 0);
  CHECK(!memcmp(buf, d[2] + 1000, 700));
  CHECK_EQ(store_get(s, id[1], 500, buf, 14, &size), PIFS_ERANGE);
  store_close(s);
  /* remount: everything derived from the log again */
  CHECK_EQ(store_open(&s, &bd), 0);
  for (int i = 0; i < 3; i++) CHECK(get_ok(s, id[i], d[i], sz[i]));
  struct pifs_store_info in2;
  store_info(s, &in2);
  CHECK_EQ(in2.free_sectors, in.free_sectors);
  CHECK_EQ(in2.chunks, 3);
  /* formatting again for the same cluster changes nothing */
  store_close(s);
  CHECK_EQ(store_format(&s, &bd, &o), 0);
  CHECK(get_ok(s, id[2], d[2], sz[2]));
  store_close(s);
  /* another cluster: refused, unless forced; forced wipes the store */
  struct pifs_format_opts other = fmt_opts(2);
  long before = card.writes;
  CHECK_EQ(store_format(&s, &bd, &other), PIFS_EWRONGCLUSTER);
  CHECK_EQ(card.writes, before);
  other.force = 1;
  CHECK_EQ(store_format(&s, &bd, &other), 0);
  uint32_t dummy;
  CHECK_EQ(store_has(s, id[0], &dummy), PIFS_ENOENT);
  store_info(s, &in);
  CHECK_EQ(in.chunks, 0);
  CHECK_EQ(in.free_sectors, in.data_sectors);
  store_close(s);
  CHECK_EQ(store_open(&s, &bd), 0);
  CHECK_EQ(store_has(s, id[2], &dummy), PIFS_ENOENT);
  store_close(s);
}

/* Frames arrive in any order within the ahead limit, repeated, overlapping,
 * of odd sizes: the chunk commits with exactly its bytes. More separate runs
 * than the node tracks are refused, not lost. */
static void test_put_out_of_order(void) {
  reset_card();
  struct pifs_store *s = NULL;
  struct pifs_format_opts o = fmt_opts(3);
  CHECK_EQ(store_format(&s, &bd, &o), 0);
  static uint8_t d[300000];
  fill(d, sizeof d, 5);
  uint8_t id[32];
  sha256(d, sizeof d, id);
  uint32_t h, have, seed = 42;
  CHECK_EQ(store_put_begin(s, id, sizeof d, &h, &have), 0);
  /* a window of frames past have, sent in a shuffled order, some twice */
  while (have < sizeof d) {
    uint32_t offs[40], lens[40], k = 0;
    for (uint32_t off = have; off < sizeof d && k < 40;) {
      uint32_t len = 1 + (seed = seed * 1103515245u + 12345u) % 1500;
      if (off + len > sizeof d) len = (uint32_t)sizeof d - off;
      if (off + len - have > PIFS_PUT_AHEAD) break;
      offs[k] = off;
      lens[k++] = len;
      off += len;
    }
    for (uint32_t i = k; i > 1; i--) { /* shuffle, but never the first frame first */
      uint32_t j = 1 + (seed = seed * 1103515245u + 12345u) % (i - 1);
      uint32_t a = offs[i - 1], b = lens[i - 1];
      offs[i - 1] = offs[j];
      lens[i - 1] = lens[j];
      offs[j] = a;
      lens[j] = b;
    }
    uint32_t before = have;
    for (uint32_t i = 0; i < k; i++) {
      int err = store_put_data(s, h, offs[i], d + offs[i], lens[i], &have);
      CHECK(err == 0 || err == PIFS_ERANGE); /* ERANGE: more runs than tracked */
      if (i % 3 == 0) CHECK(store_put_data(s, h, offs[i], d + offs[i], lens[i], &have) != PIFS_EINVAL);
    }
    CHECK(have > before || k == 0);
    if (check_failed_now) return;
  }
  CHECK_EQ(have, (uint32_t)sizeof d);
  CHECK_EQ(store_put_commit(s, h), 0);
  CHECK(get_ok(s, id, d, sizeof d));
  /* 16 separate runs are held; a 17th is refused with have */
  static uint8_t e[64 * 1024];
  fill(e, sizeof e, 6);
  sha256(e, sizeof e, id);
  CHECK_EQ(store_put_begin(s, id, sizeof e, &h, &have), 0);
  /* more than PIFS_PUT_AHEAD past have: refused with have */
  CHECK_EQ(store_put_data(s, h, PIFS_PUT_AHEAD - 10, e, 20, &have), PIFS_ERANGE);
  for (uint32_t i = 0; i < PIFS_PUT_RANGES; i++)
    CHECK_EQ(store_put_data(s, h, 100 + i * 200, e + 100 + i * 200, 50, &have), 0);
  CHECK_EQ(store_put_data(s, h, 100 + PIFS_PUT_RANGES * 200, e, 50, &have), PIFS_ERANGE);
  CHECK_EQ(have, 0);
  /* a run that bridges two merges them, and filling the gap drains them all */
  CHECK_EQ(store_put_data(s, h, 150, e + 150, 150, &have), 0);
  CHECK_EQ(store_put_data(s, h, 0, e, 100, &have), 0);
  CHECK_EQ(have, 350u);
  CHECK_EQ(store_put_data(s, h, 350, e + 350, sizeof e - 350, &have), 0);
  CHECK_EQ(have, (uint32_t)sizeof e);
  CHECK_EQ(store_put_commit(s, h), 0);
  CHECK(get_ok(s, id, e, sizeof e));
  store_close(s);
}

static void test_resume_and_bad_hash(void) {
  reset_card();
  struct pifs_store *s = NULL;
  struct pifs_format_opts o = fmt_opts(3);
  CHECK_EQ(store_format(&s, &bd, &o), 0);
  static uint8_t d[20000];
  fill(d, sizeof d, 77);
  uint8_t id[32];
  sha256(d, sizeof d, id);
  uint32_t h, have;
  CHECK_EQ(store_put_begin(s, id, sizeof d, &h, &have), 0);
  CHECK_EQ(have, 0);
  CHECK_EQ(store_put_data(s, h, 0, d, 7000, &have), 0);
  CHECK_EQ(have, 7000);
  /* past a gap: held, have unchanged */
  CHECK_EQ(store_put_data(s, h, 9000, d + 9000, 100, &have), 0);
  CHECK_EQ(have, 7000);
  /* a repeat of bytes already held is harmless */
  CHECK_EQ(store_put_data(s, h, 0, d, 4000, &have), 0);
  /* the host comes back: begin again tells how much the node holds */
  uint32_t h2;
  CHECK_EQ(store_put_begin(s, id, sizeof d, &h2, &have), 0);
  CHECK_EQ(h2, h);
  CHECK_EQ(have, 7000);
  CHECK_EQ(store_put_commit(s, h), PIFS_ERANGE); /* not complete yet */
  CHECK_EQ(store_put_data(s, h, 7000, d + 7000, sizeof d - 7000, &have), 0);
  CHECK_EQ(store_put_commit(s, h), 0);
  CHECK(get_ok(s, id, d, sizeof d));
  CHECK_EQ(store_put_begin(s, id, sizeof d, &h2, &have), PIFS_EEXIST);
  /* content that does not match its id is never committed, and frees its sectors */
  struct pifs_store_info a, b;
  store_info(s, &a);
  uint8_t wrong[32];
  memcpy(wrong, id, 32);
  wrong[0] ^= 1;
  CHECK_EQ(store_put_begin(s, wrong, 1000, &h, &have), 0);
  CHECK_EQ(store_put_data(s, h, 0, d, 1000, &have), 0);
  CHECK_EQ(store_put_commit(s, h), PIFS_EBADHASH);
  store_info(s, &b);
  CHECK_EQ(b.chunks, a.chunks);
  CHECK_EQ(b.free_sectors, a.free_sectors);
  CHECK_EQ(store_has(s, wrong, NULL), PIFS_ENOENT);
  /* invalid sizes */
  CHECK_EQ(store_put_begin(s, wrong, 0, &h, &have), PIFS_EINVAL);
  CHECK_EQ(store_put_begin(s, wrong, PIFS_MAX_CHUNK + 1, &h, &have), PIFS_EINVAL);
  /* bit rot on the card is caught on read and by scrub */
  store_close(s);
  CHECK_EQ(store_open(&s, &bd), 0);
  struct pifs_store_info in;
  store_info(s, &in);
  uint64_t data_lba = in.store_lba + (in.store_sectors - in.data_sectors);
  int flipped = 0;
  for (uint64_t sec = data_lba; sec < data_lba + in.data_sectors && !flipped; sec++) {
    if (!memcmp(card.cur + sec * 512, d, 64)) { /* the chunk's first sector */
      card.cur[sec * 512 + 100] ^= 0x40;
      flipped = 1;
    }
  }
  CHECK(flipped);
  uint8_t buf[16];
  uint32_t size;
  CHECK_EQ(store_get(s, id, 0, buf, 16, &size), PIFS_EBADHASH);
  store_close(s);
}

static int bad_count;
static void on_bad(void *ctx, const uint8_t id[32], int err) {
  (void)ctx;
  (void)id;
  if (err == PIFS_EBADHASH) bad_count++;
}

static void test_delete_reuse_compact_journal(void) {
  reset_card();
  struct pifs_store *s = NULL;
  struct pifs_format_opts o = fmt_opts(4);
  CHECK_EQ(store_format(&s, &bd, &o), 0);
  struct pifs_store_info in;
  store_info(s, &in);
  uint32_t half = in.log_half;
  CHECK(half >= 64);
  /* Many puts and deletes: more records than a log half holds, so the log
   * compacts by itself, and freed sectors are reused. */
  static uint8_t d[8192];
  uint8_t keep[32], id[32];
  fill(d, 5000, 999);
  CHECK_EQ(put(s, d, 5000, 4096, keep), 0);
  uint64_t jlen = 0;
  char entry[64];
  for (uint32_t i = 0; i < half * 3; i++) {
    fill(d, 8192, i + 5);
    CHECK_EQ(put(s, d, 8192, 8192, id), 0);
    CHECK_EQ(store_delete(s, id), 0);
    if (i % 50 == 0) {
      int n = snprintf(entry, sizeof entry, "entry %u;", i);
      CHECK_EQ(store_journal_append(s, jlen, entry, (uint32_t)n, &jlen), 0);
    }
  }
  store_info(s, &in);
  CHECK_EQ(in.chunks, 1);
  CHECK(in.epoch != o.nonce + 1); /* compacted at least once */
  CHECK_EQ(in.data_sectors - in.free_sectors, 10);
  /* a conditional append at the wrong length is refused */
  uint64_t l2;
  CHECK_EQ(store_journal_append(s, jlen - 1, "x", 1, &l2), PIFS_ECONFLICT);
  CHECK_EQ(l2, jlen);
  store_close(s);
  CHECK_EQ(store_open(&s, &bd), 0);
  fill(d, 5000, 999);
  CHECK(get_ok(s, keep, d, 5000));
  store_info(s, &in);
  CHECK_EQ(in.chunks, 1);
  CHECK_EQ(in.journal_len, jlen);
  static char j[4096];
  uint32_t got;
  uint64_t len;
  CHECK_EQ(store_journal_read(s, 0, j, sizeof j, &got, &len), 0);
  CHECK_EQ(got, jlen);
  CHECK(!memcmp(j, "entry 0;entry 50;", 17));
  /* reading from the middle of an entry */
  CHECK_EQ(store_journal_read(s, 3, j, 5, &got, &len), 0);
  CHECK_EQ(got, 5);
  CHECK(!memcmp(j, "ry 0;", 5));
  CHECK_EQ(store_journal_read(s, jlen + 1, j, 5, &got, &len), PIFS_ERANGE);
  /* scrub finds nothing wrong */
  uint32_t cur = 0, checked = 0, total = 0;
  bad_count = 0;
  while (cur != 0xFFFFFFFFu) {
    CHECK_EQ(store_scrub(s, &cur, 7, &checked, on_bad, NULL), 0);
    total += checked;
  }
  CHECK_EQ(total, 1);
  CHECK_EQ(bad_count, 0);
  store_close(s);
}

static void test_full_store(void) {
  reset_card();
  struct pifs_store *s = NULL;
  struct pifs_format_opts o = fmt_opts(5);
  CHECK_EQ(store_format(&s, &bd, &o), 0);
  struct pifs_store_info in;
  store_info(s, &in);
  static uint8_t d[1 << 20];
  uint8_t id[32];
  int n = 0, err = 0;
  while (!(err = (fill(d, sizeof d, (uint32_t)n + 100), put(s, d, sizeof d, 16384, id)))) n++;
  CHECK_EQ(err, PIFS_ENOSPC);
  CHECK(n >= 6);
  store_info(s, &in);
  CHECK(in.free_sectors < 2048);
  /* delete one and the space is there again */
  fill(d, sizeof d, 100);
  sha256(d, sizeof d, id);
  CHECK_EQ(store_delete(s, id), 0);
  fill(d, sizeof d, 7777);
  CHECK_EQ(put(s, d, sizeof d, 16384, id), 0);
  store_close(s);
}

/* ---- power loss after every k-th sector write ---- */

#define NOPS 9
struct op {
  int kind; /* 0 put, 1 delete, 2 journal, 3 compact */
  uint32_t size, seed, target;
};
static const struct op workload[NOPS] = {
    {0, 700, 1, 0},   {0, 6000, 2, 0}, {2, 0, 0, 0},    {0, 40000, 3, 0}, {1, 0, 0, 0},
    {3, 0, 0, 0},     {0, 1, 4, 0},    {1, 0, 0, 1},    {2, 0, 0, 0},
};

struct expect {
  int acked[NOPS];
  int started[NOPS];
};

static uint8_t ids[NOPS][32];
static uint8_t bufs[NOPS][40000];

static void run_workload(struct pifs_store *s, struct expect *e) {
  uint64_t jl = 0;
  for (int i = 0; i < NOPS; i++) {
    const struct op *op = &workload[i];
    int err = 0;
    e->started[i] = 1;
    if (op->kind == 0) err = put(s, bufs[i], op->size, 4096, ids[i]);
    else if (op->kind == 1) err = store_delete(s, ids[op->target]);
    else if (op->kind == 2) err = store_journal_append(s, jl, "journal!", 8, &jl);
    else err = store_compact(s);
    if (err) return; /* the power went */
    e->acked[i] = 1;
  }
}

static void test_power_loss_every_write(void) {
  reset_card();
  struct pifs_store *s = NULL;
  struct pifs_format_opts o = fmt_opts(6);
  CHECK_EQ(store_format(&s, &bd, &o), 0);
  store_close(s);
  /* the whole card after FORMAT is the starting point of every trial */
  uint8_t *snap = malloc(card.sectors * 512);
  CHECK(snap != NULL);
  memcpy(snap, card.cur, card.sectors * 512);
  for (int i = 0; i < NOPS; i++) {
    if (workload[i].kind == 0) {
      fill(bufs[i], workload[i].size, workload[i].seed);
      sha256(bufs[i], workload[i].size, ids[i]);
    }
  }
  /* How many sector writes does the whole workload take? */
  CHECK_EQ(store_open(&s, &bd), 0);
  power_on(-1);
  struct expect full;
  memset(&full, 0, sizeof full);
  run_workload(s, &full);
  long total = card.writes;
  store_close(s);
  CHECK(full.acked[NOPS - 1]);
  CHECK(total > 50);
  int trials = 0;
  for (long k = 0; k <= total; k++) {
    memcpy(card.cur, snap, card.sectors * 512);
    power_on(-1);
    CHECK_EQ(store_open(&s, &bd), 0);
    power_on(k);
    struct expect e;
    memset(&e, 0, sizeof e);
    run_workload(s, &e);
    store_close(s);
    /* power back on: mount and check */
    power_on(-1);
    CHECK_EQ(store_open(&s, &bd), 0);
    uint32_t sizes[NOPS];
    int live = 0;
    for (int i = 0; i < NOPS; i++) {
      if (workload[i].kind != 0) continue;
      int deleted_ack = 0, deleted_started = 0;
      for (int j = 0; j < NOPS; j++)
        if (workload[j].kind == 1 && workload[j].target == (uint32_t)i) {
          deleted_ack = e.acked[j];
          deleted_started = e.started[j];
        }
      uint32_t size;
      int present = store_has(s, ids[i], &size) == 0;
      if (e.acked[i] && !deleted_started) {
        if (!present || !get_ok(s, ids[i], bufs[i], workload[i].size)) {
          fprintf(stderr, "  k=%ld: acknowledged chunk %d lost or damaged\n", k, i);
          CHECK(0);
        }
      }
      if (!e.acked[i] && present) {
        fprintf(stderr, "  k=%ld: unacknowledged chunk %d visible\n", k, i);
        CHECK(0);
      }
      if (deleted_ack && present) {
        fprintf(stderr, "  k=%ld: deleted chunk %d came back\n", k, i);
        CHECK(0);
      }
      if (present) {
        CHECK(get_ok(s, ids[i], bufs[i], workload[i].size));
        sizes[live++] = workload[i].size;
      }
    }
    /* the journal holds exactly the acknowledged appends (or one more whose
     * record landed just as the power went) */
    int jacked = 0, jstarted = 0;
    for (int i = 0; i < NOPS; i++)
      if (workload[i].kind == 2) {
        jacked += e.acked[i];
        jstarted += e.started[i];
      }
    struct pifs_store_info in;
    store_info(s, &in);
    CHECK(in.journal_len >= 8u * (uint64_t)jacked && in.journal_len <= 8u * (uint64_t)jstarted);
    /* free space is accounted exactly */
    CHECK_EQ(in.data_sectors - in.free_sectors, used_sectors(sizes, live));
    CHECK_EQ(in.chunks, (uint32_t)live);
    /* and the store keeps working after the remount */
    uint8_t nid[32];
    static uint8_t extra[3000];
    fill(extra, sizeof extra, (uint32_t)k + 1000);
    CHECK_EQ(put(s, extra, sizeof extra, 1000, nid), 0);
    CHECK(get_ok(s, nid, extra, sizeof extra));
    store_close(s);
    trials++;
  }
  free(snap);
  printf("  power loss: %d trials (every sector write of a %ld-write workload)\n", trials, total);
  CHECK(trials == total + 1);
}

static void test_refusals_write_nothing(void) {
  /* a card without a FAT32 volume: nothing is written by open or format */
  uint8_t *save = malloc(card.sectors * 512);
  memcpy(save, card.base, card.sectors * 512);
  memset(card.cur, 0, card.sectors * 512);
  power_on(-1);
  struct pifs_store *s = NULL;
  CHECK_EQ(store_open(&s, &bd), PIFS_EBADSIG);
  struct pifs_format_opts o = fmt_opts(7);
  CHECK_EQ(store_format(&s, &bd, &o), PIFS_EBADSIG);
  CHECK_EQ(card.writes, 0);
  /* damaged superblocks: refused as not ours, not re-formatted without force */
  memcpy(card.cur, save, card.sectors * 512);
  CHECK_EQ(store_format(&s, &bd, &o), 0);
  struct pifs_store_info in;
  store_info(s, &in);
  store_close(s);
  memset(card.cur + in.store_lba * 512, 0x5A, 1024);
  power_on(-1);
  CHECK_EQ(store_open(&s, &bd), PIFS_EUNFORMATTED);
  CHECK_EQ(store_format(&s, &bd, &o), PIFS_ECORRUPT);
  CHECK_EQ(card.writes, 0);
  free(save);
}

/* A compaction cut short leaves records in the other half; a later one into
 * that half writes fewer. Those old records must never be replayed. */
static void test_interrupted_compaction_leaves_no_ghosts(void) {
  reset_card();
  struct pifs_store *s = NULL;
  struct pifs_format_opts o = fmt_opts(8);
  CHECK_EQ(store_format(&s, &bd, &o), 0);
  static uint8_t d[10][700];
  uint8_t id[10][32];
  for (int i = 0; i < 10; i++) {
    fill(d[i], 700, (uint32_t)i + 300);
    CHECK_EQ(put(s, d[i], 700, 700, id[i]), 0);
  }
  power_on(9); /* the superblock reservation and 8 of the 10 records */
  CHECK(store_compact(s) != 0);
  store_close(s);
  power_on(-1);
  CHECK_EQ(store_open(&s, &bd), 0);
  for (int i = 0; i < 5; i++) CHECK_EQ(store_delete(s, id[i]), 0);
  CHECK_EQ(store_compact(s), 0); /* 5 records into the half that holds 8 old ones */
  store_close(s);
  CHECK_EQ(store_open(&s, &bd), 0);
  struct pifs_store_info in;
  store_info(s, &in);
  CHECK_EQ(in.chunks, 5);
  for (int i = 0; i < 10; i++) CHECK_EQ(store_has(s, id[i], NULL), i < 5 ? PIFS_ENOENT : 0);
  CHECK_EQ(in.data_sectors - in.free_sectors, 5 * 2);
  /* the same after a forced re-format: nothing of the old store comes back */
  store_close(s);
  struct pifs_format_opts other = fmt_opts(9);
  other.force = 1;
  CHECK_EQ(store_format(&s, &bd, &other), 0);
  uint8_t nid[32];
  CHECK_EQ(put(s, d[0], 700, 700, nid), 0);
  CHECK_EQ(store_compact(s), 0);
  store_close(s);
  CHECK_EQ(store_open(&s, &bd), 0);
  store_info(s, &in);
  CHECK_EQ(in.chunks, 1);
  store_close(s);
}

/* A FORMAT that cannot make a usable store writes nothing. */
static void test_format_too_small_writes_nothing(void) {
  reset_card();
  struct pifs_store *s = NULL;
  struct pifs_format_opts o = fmt_opts(10);
  o.size_sectors = 100;
  CHECK_EQ(store_format(&s, &bd, &o), PIFS_EINVAL);
  CHECK_EQ(card.writes, 0);
  o.size_sectors = 0;
  o.reserve_sectors = card.sectors - 1000; /* leaves less than the minimum */
  CHECK_EQ(store_format(&s, &bd, &o), PIFS_ENOSPC);
  CHECK_EQ(card.writes, 0);
  CHECK_EQ(store_open(&s, &bd), PIFS_EUNFORMATTED);
  o.reserve_sectors = 0;
  o.size_sectors = 2048;
  CHECK_EQ(store_format(&s, &bd, &o), 0);
  store_close(s);
}

/* Writes the RAM card to a file and runs fsck.fat -n on it. */
static int fsck_clean(void) {
  char path[] = "/tmp/pifs-fsck-XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) return 0;
  ssize_t w = write(fd, card.cur, card.sectors * 512);
  close(fd);
  char cmd[256];
  snprintf(cmd, sizeof cmd, "fsck.fat -n %s >/dev/null 2>&1", path);
  int rc = w == (ssize_t)(card.sectors * 512) ? system(cmd) : -1;
  unlink(path);
  return rc == 0;
}

static void test_grow_keeps_chunks_and_fat_clean(void) {
  reset_card();
  struct pifs_store *s = NULL;
  struct pifs_format_opts o = fmt_opts(11);
  o.size_sectors = 2048;
  CHECK_EQ(store_format(&s, &bd, &o), 0);
  static uint8_t d[400000];
  uint8_t id[4][32];
  for (int i = 0; i < 3; i++) {
    fill(d, 200000, (uint32_t)i + 40);
    CHECK_EQ(put(s, d, 200000, 16384, id[i]), 0);
  }
  fill(d, 400000, 43);
  CHECK_EQ(put(s, d, 400000, 16384, id[3]), PIFS_ENOSPC); /* full */
  struct pifs_store_info a, b;
  store_info(s, &a);
  CHECK_EQ(store_grow(s, 8192, 0), 0);
  store_info(s, &b);
  CHECK_EQ(b.store_sectors, 8192);
  CHECK_EQ(b.free_sectors - a.free_sectors, 8192 - 2048);
  CHECK_EQ(put(s, d, 400000, 16384, id[3]), 0); /* fits now */
  store_close(s);
  CHECK(fsck_clean());
  CHECK_EQ(store_open(&s, &bd), 0);
  store_info(s, &a);
  CHECK_EQ(a.store_sectors, 8192);
  CHECK_EQ(a.free_sectors, b.free_sectors - 782);
  for (int i = 0; i < 3; i++) {
    fill(d, 200000, (uint32_t)i + 40);
    CHECK(get_ok(s, id[i], d, 200000));
  }
  /* as far as the free space goes, less a reserve */
  CHECK_EQ(store_grow(s, 0, 4096), 0);
  store_info(s, &b);
  CHECK(b.store_sectors > 8192);
  store_close(s);
  CHECK(fsck_clean());
}

/* A FAT that calls the root directory's cluster free: a damaged card. It is
 * refused, and not one sector is written (found by fuzz_mount: the new
 * PIFS/ directory was allocated over the root). */
static void test_fat_disagreeing_with_tree_is_refused(void) {
  reset_card();
  uint32_t reserved = ld16(card.cur + 14), root = ld32(card.cur + 44);
  uint8_t *fat = card.cur + (size_t)reserved * 512;
  st32(fat + 4 * root, 0); /* only FAT #1: as the fuzzer found it */
  power_on(-1);
  struct pifs_store *s = NULL;
  struct pifs_format_opts o = fmt_opts(12);
  CHECK_EQ(store_format(&s, &bd, &o), PIFS_ECORRUPT);
  CHECK_EQ(card.writes, 0);
}


/* ---- journal trimming ---- */

/* Appends entry i (its bytes depend on i; sizes vary from 40 to ~1300 bytes,
 * so some records take 3 sectors) at the journal's end; returns its offset. */
static uint8_t jentry[2000];
static uint32_t jentry_len(uint32_t i) { return 40u + (i * 397u) % 1300u; }
static int jappend(struct pifs_store *s, uint32_t i, uint64_t *len) {
  uint32_t n = jentry_len(i);
  fill(jentry, n, i + 7);
  return store_journal_append(s, *len, jentry, n, len);
}

/* The journal [from, len) read back equals entries idx[0..count) in order
 * (idx NULL: entries first, first+1, ...). */
static int journal_is_list(struct pifs_store *s, uint64_t from, uint32_t first, const uint32_t *idx,
                           uint32_t count) {
  static uint8_t buf[1 << 20], want[1 << 20];
  uint32_t w = 0, got = 0;
  for (uint32_t k = 0; k < count; k++) {
    uint32_t i = idx ? idx[k] : first + k;
    fill(want + w, jentry_len(i), i + 7);
    w += jentry_len(i);
  }
  uint64_t len = 0, off = from;
  for (;;) {
    uint32_t n = 0;
    if (store_journal_read(s, off, buf + got, 16384, &n, &len)) return 0;
    got += n;
    off += n;
    if (n == 0 || off >= len) break;
  }
  return len == from + w && got == w && !memcmp(buf, want, w);
}

static int journal_is(struct pifs_store *s, uint64_t from, uint32_t first, uint32_t count) {
  return journal_is_list(s, from, first, NULL, count);
}

static void test_journal_trim_and_remount(void) {
  reset_card();
  struct pifs_store *s = NULL;
  struct pifs_format_opts o = fmt_opts(11);
  CHECK_EQ(store_format(&s, &bd, &o), 0);
  uint64_t len = 0, off[12];
  for (uint32_t i = 0; i < 10; i++) {
    off[i] = len;
    CHECK_EQ(jappend(s, i, &len), 0);
  }
  off[10] = len;
  uint64_t st = 0, l = 0;
  /* not a record boundary: refused, nothing written */
  long w0 = card.writes;
  CHECK_EQ(store_journal_trim(s, off[4] + 1, &st, &l), PIFS_EINVAL);
  CHECK_EQ(st, 0);
  CHECK_EQ(l, len);
  CHECK_EQ(card.writes, w0);
  /* at entry 4: the entries before it are gone, offsets stay absolute */
  CHECK_EQ(store_journal_trim(s, off[4], &st, &l), 0);
  CHECK_EQ(st, off[4]);
  CHECK_EQ(l, len);
  CHECK(card.writes > w0);
  /* again at the same place: nothing to do; below the start: refused */
  w0 = card.writes;
  CHECK_EQ(store_journal_trim(s, off[4], &st, &l), 0);
  CHECK_EQ(store_journal_trim(s, off[2], &st, &l), PIFS_EINVAL);
  CHECK_EQ(card.writes, w0);
  static uint8_t buf[64];
  uint32_t n;
  CHECK_EQ(store_journal_read(s, off[4] - 1, buf, 10, &n, &l), PIFS_ERANGE);
  CHECK_EQ(store_journal_read(s, 0, buf, 10, &n, &l), PIFS_ERANGE);
  CHECK(journal_is(s, off[4], 4, 6));
  struct pifs_store_info in;
  store_info(s, &in);
  CHECK_EQ(in.journal_start, off[4]);
  CHECK_EQ(in.journal_len, len);
  store_close(s);
  /* remount: the same start, length and entries */
  CHECK_EQ(store_open(&s, &bd), 0);
  store_info(s, &in);
  CHECK_EQ(in.journal_start, off[4]);
  CHECK_EQ(in.journal_len, len);
  CHECK(journal_is(s, off[4], 4, 6));
  /* reading from the middle of an entry after the start still works */
  CHECK_EQ(store_journal_read(s, off[5] + 3, buf, 5, &n, &l), 0);
  fill(jentry, jentry_len(5), 5 + 7);
  CHECK(n == 5 && !memcmp(buf, jentry + 3, 5));
  /* appends go on at the absolute end */
  CHECK_EQ(jappend(s, 10, &len), 0);
  CHECK_EQ(len, off[10] + jentry_len(10));
  /* trim at the very end: an empty journal that keeps its length */
  CHECK_EQ(store_journal_trim(s, len, &st, &l), 0);
  CHECK(st == len && l == len);
  CHECK(journal_is(s, len, 0, 0));
  /* past the end (a node that missed entries the host no longer holds):
   * the journal is empty at X and expects the next append there */
  uint64_t x = len + 5000;
  CHECK_EQ(store_journal_trim(s, x, &st, &l), 0);
  CHECK(st == x && l == x);
  uint64_t old = len;
  CHECK_EQ(jappend(s, 11, &old), PIFS_ECONFLICT);
  CHECK_EQ(old, x);
  len = x;
  CHECK_EQ(jappend(s, 11, &len), 0);
  store_close(s);
  CHECK_EQ(store_open(&s, &bd), 0);
  store_info(s, &in);
  CHECK_EQ(in.journal_start, x);
  CHECK_EQ(in.journal_len, len);
  CHECK(journal_is(s, x, 11, 1));
  /* and a compaction keeps exactly that */
  CHECK_EQ(store_compact(s), 0);
  store_close(s);
  CHECK_EQ(store_open(&s, &bd), 0);
  store_info(s, &in);
  CHECK_EQ(in.journal_start, x);
  CHECK_EQ(in.journal_len, len);
  CHECK(journal_is(s, x, 11, 1));
  store_close(s);
}

/* A trimmed journal's records leave the log at the next compaction; a log
 * that the journal filled up takes appends again after a trim. */
static void test_trim_compaction_reclaims_log(void) {
  reset_card();
  struct pifs_store *s = NULL;
  struct pifs_format_opts o = fmt_opts(12);
  CHECK_EQ(store_format(&s, &bd, &o), 0);
  struct pifs_store_info in;
  store_info(s, &in);
  uint32_t half = in.log_half;
  /* Fill the log with journal records until even a compaction cannot make
   * room (the live set, every JOURNAL record, is larger than a half), then
   * top it up with entries that still fit, to the last sector. */
  uint64_t len = 0, off[600];
  uint32_t idx[600], count = 0, fails = 0;
  for (uint32_t i = 0; i < 600 && fails < 40; i++) {
    uint64_t at = len;
    int err = jappend(s, i, &len);
    if (err) {
      CHECK_EQ(err, PIFS_ENOSPC);
      fails++;
      continue;
    }
    off[count] = at;
    idx[count++] = i;
  }
  store_info(s, &in);
  uint32_t used_full = in.log_used;
  CHECK(count > 100);
  CHECK_EQ(used_full, half);
  printf("  full log: %u entries, %u of %u log sectors used\n", count, used_full, half);
  /* Trim all but the last 10 entries: no room for a TRIM record, so the
   * trim compacts to its new start at once. */
  uint64_t st, l;
  CHECK_EQ(store_journal_trim(s, off[count - 10], &st, &l), 0);
  CHECK_EQ(st, off[count - 10]);
  store_info(s, &in);
  uint32_t used_after = in.log_used, want = 1;
  for (uint32_t k = count - 10; k < count; k++) want += (24 + jentry_len(idx[k]) + 511) / 512;
  printf("  trim of the first %u entries: %u -> %u log sectors (%u free)\n", count - 10,
         used_full, used_after, half - used_after);
  CHECK_EQ(used_after, want); /* 1 TRIM record + the 10 entries kept */
  CHECK(journal_is_list(s, off[count - 10], 0, idx + count - 10, 10));
  /* appends work again */
  for (uint32_t k = 0; k < 20; k++) {
    idx[count + k] = 1000 + k;
    CHECK_EQ(jappend(s, 1000 + k, &len), 0);
  }
  store_close(s);
  CHECK_EQ(store_open(&s, &bd), 0);
  CHECK(journal_is_list(s, off[count - 10], 0, idx + count - 10, 30));
  /* A trim that fits as a record, then a compaction: the log shrinks to
   * what the journal still holds. */
  uint64_t x = off[count - 10];
  for (uint32_t k = 0; k < 25; k++) x += jentry_len(idx[count - 10 + k]);
  store_info(s, &in);
  uint32_t before = in.log_used;
  CHECK_EQ(store_journal_trim(s, x, &st, &l), 0);
  store_info(s, &in);
  CHECK_EQ(in.log_used, before + 1); /* the TRIM record */
  CHECK_EQ(store_compact(s), 0);
  store_info(s, &in);
  printf("  trim of 25 more, then compaction: %u -> %u log sectors\n", before + 1, in.log_used);
  want = 1;
  for (uint32_t k = 25; k < 30; k++) want += (24 + jentry_len(idx[count - 10 + k]) + 511) / 512;
  CHECK_EQ(in.log_used, want);
  store_close(s);
  CHECK_EQ(store_open(&s, &bd), 0);
  store_info(s, &in);
  CHECK_EQ(in.log_used, want);
  CHECK_EQ(in.journal_start, x);
  CHECK(journal_is_list(s, x, 0, idx + count + 15, 5));
  store_close(s);
}

/* Power loss after every sector write of: appends, a trim, appends, a
 * compaction, a trim past the end, an append, a compaction. After each
 * remount the journal is the old one or the new one, never a mix, and no
 * entry at or after a started trim's offset is lost. */
#define TW_APPENDS 8
static void test_power_loss_during_trim_and_compaction(void) {
  reset_card();
  struct pifs_store *s = NULL;
  struct pifs_format_opts o = fmt_opts(13);
  CHECK_EQ(store_format(&s, &bd, &o), 0);
  static uint8_t d[2000];
  uint8_t cid[32];
  fill(d, 2000, 77);
  CHECK_EQ(put(s, d, 2000, 2000, cid), 0); /* a chunk that compaction carries along */
  uint64_t base = 0;
  for (uint32_t i = 0; i < 6; i++) CHECK_EQ(jappend(s, i, &base), 0);
  store_close(s);
  uint8_t *snap = malloc(card.sectors * 512);
  CHECK(snap != NULL);
  memcpy(snap, card.cur, card.sectors * 512);
  /* entry offsets: 0..5 are on the card; 6, 7 are appended by the workload */
  uint64_t off[TW_APPENDS + 2];
  off[0] = 0;
  for (uint32_t i = 0; i <= TW_APPENDS; i++) off[i + 1] = off[i] + jentry_len(i);
  uint64_t x1 = off[3], x2 = off[TW_APPENDS] + 4096; /* x2: past the end */
  long total = -1;
  int trials = 0;
  for (long k = -1; total < 0 || k <= total; k++) {
    memcpy(card.cur, snap, card.sectors * 512);
    power_on(-1);
    CHECK_EQ(store_open(&s, &bd), 0);
    power_on(k < 0 ? -1 : k);
    /* steps: 0 trim x1, 1 append 6, 2 append 7, 3 compact, 4 trim x2,
     * 5 append 8 at x2, 6 compact */
    int acked = -1, started = -1, err = 0;
    uint64_t len = off[6], st, l;
    for (int step = 0; step < 7 && !err; step++) {
      started = step;
      switch (step) {
      case 0: err = store_journal_trim(s, x1, &st, &l); break;
      case 1: err = jappend(s, 6, &len); break;
      case 2: err = jappend(s, 7, &len); break;
      case 3: err = store_compact(s); break;
      case 4: err = store_journal_trim(s, x2, &st, &l); break;
      case 5: len = x2; err = jappend(s, 8, &len); break;
      case 6: err = store_compact(s); break;
      }
      if (!err) acked = step;
    }
    store_close(s);
    if (k < 0) { /* the dry run: how many sector writes it takes */
      CHECK_EQ(acked, 6);
      total = card.writes;
      continue;
    }
    power_on(-1);
    CHECK_EQ(store_open(&s, &bd), 0);
    struct pifs_store_info in;
    store_info(s, &in);
    /* Which journal is it? Decided by the start: 0 (no trim landed), x1 or x2. */
    uint64_t lo_start = acked >= 4 ? x2 : acked >= 0 ? x1 : 0;
    uint64_t hi_start = started >= 4 ? x2 : started >= 0 ? x1 : 0;
    if (in.journal_start < lo_start || in.journal_start > hi_start ||
        (in.journal_start != 0 && in.journal_start != x1 && in.journal_start != x2)) {
      fprintf(stderr, "  k=%ld: journal start %llu (acked step %d, started %d)\n", k,
              (unsigned long long)in.journal_start, acked, started);
      CHECK(0);
    }
    int ok = 0;
    if (in.journal_start == x2) {
      /* entry 8 is there exactly when its append landed */
      uint32_t has8 = in.journal_len > x2;
      ok = journal_is(s, x2, 8, has8) && (acked < 5 || has8);
    } else {
      /* entries from the start up to 5, 6 or 7: the acknowledged ones and
       * perhaps the one in progress; nothing after x1 lost */
      uint32_t first = in.journal_start == x1 ? 3 : 0, last = 5;
      if (in.journal_len == off[7]) last = 6;
      else if (in.journal_len == off[8]) last = 7;
      ok = journal_is(s, in.journal_start, first, last + 1 - first) &&
           (acked < 1 || last >= 6) && (acked < 2 || last >= 7) && (started >= 1 || last == 5) &&
           (started >= 2 || last <= 6);
    }
    if (!ok) {
      fprintf(stderr, "  k=%ld: journal [%llu, %llu) wrong (acked step %d, started %d)\n", k,
              (unsigned long long)in.journal_start, (unsigned long long)in.journal_len, acked,
              started);
      CHECK(0);
    }
    CHECK(get_ok(s, cid, d, 2000));
    /* after the last compaction: the log holds the chunk, TRIM and entry 8 */
    if (acked == 6) CHECK_EQ(in.log_used, 1 + 1 + (24 + jentry_len(8) + 511) / 512);
    /* the store keeps working: an append at its end */
    uint64_t e = in.journal_len;
    CHECK_EQ(jappend(s, 9, &e), 0);
    store_close(s);
    trials++;
  }
  free(snap);
  printf("  power loss: %d trials (every sector write of a %ld-write trim workload)\n", trials,
         total);
  CHECK_EQ(trials, total + 1);
}

int main(void) {
  if (make_card()) {
    fprintf(stderr, "cannot make a FAT32 image (mkfs.fat missing?)\n");
    printf("0 passed, 1 failed\n");
    return 1;
  }
  RUN(test_format_put_get_remount);
  RUN(test_resume_and_bad_hash);
  RUN(test_put_out_of_order);
  RUN(test_delete_reuse_compact_journal);
  RUN(test_full_store);
  RUN(test_power_loss_every_write);
  RUN(test_refusals_write_nothing);
  RUN(test_interrupted_compaction_leaves_no_ghosts);
  RUN(test_format_too_small_writes_nothing);
  RUN(test_grow_keeps_chunks_and_fat_clean);
  RUN(test_fat_disagreeing_with_tree_is_refused);
  RUN(test_journal_trim_and_remount);
  RUN(test_trim_compaction_reclaims_log);
  RUN(test_power_loss_during_trim_and_compaction);
  return CHECK_DONE();
}
