/* libFuzzer target: damaged and hostile cards.
 *
 * Three cards are made once with mkfs.fat (--invariant, so always the same):
 *   base 0  superfloppy FAT32, no store
 *   base 1  superfloppy FAT32 with a store (chunks A, B; a journal)
 *   base 2  MBR, FAT32 partition (type 0x0C) at sector 2048, with a store
 * Input: [flags] then 512-byte blocks that overwrite, in order, the key
 * sectors of the chosen card (a short last block overwrites only the start
 * of its sector; missing blocks leave the sector as mkfs.fat made it):
 *   K0 sector 0 (MBR or boot sector)      K6  first sector of PIFS/
 *   K1 partition boot sector (superfloppy: K7  FAT #1 sector of STORE.DAT's
 *      the backup boot sector at 6)            first cluster
 *   K2 FSInfo                             K8  STORE.DAT sector 0 (superblock)
 *   K3 FAT #1 sector 0                    K9  STORE.DAT sector 1 (superblock)
 *   K4 FAT #2 sector 0                    K10 STORE.DAT sector 2 (log)
 *   K5 first sector of the root directory K11 STORE.DAT sector 3 (log)
 * (base 0 has no PIFS/ nor STORE.DAT: K6..K11 are the free sectors where a
 * new store would go.)
 * flags: bits 0-1 card (3 = card 1); bit 2 format with force; bit 3 format
 * 4096 sectors (else the largest run less 1024 sectors); bit 4 grow the store;
 * bit 5 a write workload (put, journal, delete) and a remount; bit 6 read
 * files with fat32_read_file.
 *
 * Invariants (a broken one aborts):
 *  - fat32_mount, fat32_find_store and store_open never write;
 *  - a refused card (store_open: anything but PIFS_OK and PIFS_EUNFORMATTED)
 *    is not written by store_format without force, and a card refused by
 *    fat32_mount or by the STORE.DAT checks is not written even with force;
 *    a card whose STORE.DAT has no valid superblock (EUNFORMATTED, "not ours")
 *    is not written by store_format without force;
 *  - nothing ever writes the MBR, the boot sector or any reserved sector but
 *    FSInfo, nor outside the FAT volume;
 *  - a store that store_format created on an unformatted card opens again,
 *    at the same place, with the same cluster id;
 *  - store_format and fat32_grow_store keep every entry of the root
 *    directory (as read through FAT #1 by the harness) as it was;
 *  - a chunk committed on an open store is there after a remount (when the
 *    remount succeeds) and a grown store opens again, no smaller. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crc32c.h"
#include "fat32.h"
#include "ramdisk.h"
#include "sha256.h"
#include "store.h"

#define NBASE 3
#define NKEY 12
#define CARD_SECTORS (36u * 2048u)
#define MBR_OFFSET 2048u

static void die(const char *msg, long long a, long long b) {
  fprintf(stderr, "\nINVARIANT BROKEN: %s (%lld, %lld)\n", msg, a, b);
  abort();
}

struct base {
  struct ramdisk rd;
  uint64_t key[NKEY];
};
static struct base bases[NBASE];
static int verbose; /* PIFS_FUZZ_VERBOSE=1: say what each run did (to read a reproducer) */
static const uint8_t CLUSTER_ID = 0x22;

static struct pifs_format_opts opts(uint64_t size, uint64_t reserve, int force, uint32_t nonce) {
  struct pifs_format_opts o;
  memset(&o, 0, sizeof o);
  memset(o.cluster_id, CLUSTER_ID, 16);
  o.node_id = 3;
  o.size_sectors = size;
  o.reserve_sectors = reserve;
  o.force = force;
  o.nonce = nonce;
  return o;
}

static void put_bytes(struct pifs_store *s, const uint8_t *data, uint32_t n, uint8_t id[32], int *committed) {
  uint32_t h, have;
  sha256(data, n, id);
  *committed = 0;
  if (store_put_begin(s, id, n, &h, &have)) return;
  while (have < n) {
    uint32_t k = n - have > 700 ? 700 : n - have;
    if (store_put_data(s, h, have, data + have, k, &have)) return;
  }
  *committed = store_put_commit(s, h) == 0;
}

/* ---- the cards ---- */

static uint32_t find_pifs_dir(struct ramdisk *r, const struct fat32_vol *v) {
  const uint8_t *d = r->cur + (v->part_lba + v->data_start) * PIFS_SECTOR;
  for (int i = 0; i < 16; i++, d += 32)
    if (!memcmp(d, "PIFS       ", 11)) return ((uint32_t)ld16(d + 20) << 16) | ld16(d + 26);
  return 0;
}

static void make_base(int b) {
  struct base *B = &bases[b];
  struct ramdisk *r = &B->rd;
  if (b == 2) {
    rd_mkfs(r, CARD_SECTORS + MBR_OFFSET, MBR_OFFSET);
    uint8_t *m = r->base; /* one partition entry, type 0x0C (FAT32 LBA) */
    m[446] = 0x00;
    m[446 + 4] = 0x0C;
    st32(m + 446 + 8, MBR_OFFSET);
    st32(m + 446 + 12, CARD_SECTORS);
    m[510] = 0x55;
    m[511] = 0xAA;
    memcpy(r->cur, r->base, PIFS_SECTOR);
  } else {
    rd_mkfs(r, CARD_SECTORS, 0);
  }
  if (b >= 1) {
    struct pifs_store *s = NULL;
    struct pifs_format_opts o = b == 1 ? opts(4096, 0, 0, 0xabc) : opts(0, 8192, 0, 0xdef);
    int err = store_format(&s, &r->bd, &o);
    if (err) die("fixture: store_format failed", b, err);
    uint8_t data[3000], id[32];
    int ok;
    for (int k = 0; k < 2; k++) {
      for (uint32_t i = 0; i < sizeof data; i++) data[i] = (uint8_t)(i * 7 + k);
      put_bytes(s, data, k ? 3000 : 200, id, &ok);
      if (!ok) die("fixture: put failed", b, k);
    }
    uint64_t jl;
    if (store_journal_append(s, 0, "journal!", 8, &jl)) die("fixture: journal failed", b, 0);
    store_close(s);
  }
  rd_commit(r);

  struct fat32_vol v;
  memset(&v, 0, sizeof v);
  if (fat32_mount(&v, &r->bd)) die("fixture: card does not mount", b, 0);
  uint64_t p = v.part_lba, slba = 0, ssec = 0;
  uint32_t pifs = find_pifs_dir(r, &v);
  B->key[0] = 0;
  B->key[1] = p ? p : 6;
  B->key[2] = p + v.fsinfo_sec;
  B->key[3] = p + v.reserved;
  B->key[4] = p + v.reserved + v.fat_sz;
  B->key[5] = p + v.data_start;
  B->key[6] = pifs ? p + v.data_start + (uint64_t)(pifs - 2) * v.sec_per_clus : p + v.data_start + 1;
  if (fat32_find_store(&v, &slba, &ssec) == 0) {
    uint32_t clus = (uint32_t)((slba - p - v.data_start) / v.sec_per_clus) + 2;
    B->key[7] = p + v.reserved + clus / 128u;
  } else {
    slba = p + v.data_start + 2;
    B->key[7] = p + v.reserved + 1;
  }
  for (int i = 0; i < 4; i++) B->key[8 + i] = slba + (uint64_t)i;
}

/* PIFS_FUZZ_MOUNT_SEEDS=dir: writes the seed corpus (the key sectors as they
 * are) into dir. */
static void write_seeds(const char *dir) {
  static const uint8_t flags[][2] = {{0, 0}, {0, 0x48}, {1, 0x70}, {1, 0x04}, {2, 0x60}, {2, 0x10}};
  for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
    int b = flags[i][0];
    char path[4096];
    snprintf(path, sizeof path, "%s/card%d-%02x", dir, b, flags[i][1]);
    FILE *f = fopen(path, "wb");
    if (!f) die("cannot write a seed", (long long)i, 0);
    uint8_t fl = (uint8_t)(b | flags[i][1]);
    fwrite(&fl, 1, 1, f);
    for (int k = 0; k < NKEY; k++) fwrite(bases[b].rd.base + bases[b].key[k] * PIFS_SECTOR, PIFS_SECTOR, 1, f);
    fclose(f);
  }
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  for (int b = 0; b < NBASE; b++) make_base(b);
  verbose = getenv("PIFS_FUZZ_VERBOSE") != NULL;
  const char *seeds = getenv("PIFS_FUZZ_MOUNT_SEEDS");
  if (seeds) write_seeds(seeds);
  return 0;
}

/* ---- one run ---- */

#define MAX_DENT 512
static uint8_t dent_before[MAX_DENT][32], dent_after[MAX_DENT][32];

/* The live entries of the root directory, read straight from the card
 * through FAT #1 (not through the core); -1 when the chain cannot be walked
 * to its end marker, and then nothing is compared. */
static int root_entries(const struct ramdisk *r, const struct fat32_vol *v, uint8_t (*out)[32]) {
  uint32_t c = v->root_clus;
  int n = 0;
  for (int hops = 0; hops < 64; hops++) {
    if (c < 2 || c > v->nclusters + 1) return -1;
    for (uint32_t sec = 0; sec < v->sec_per_clus; sec++) {
      uint64_t lba = v->part_lba + v->data_start + (uint64_t)(c - 2) * v->sec_per_clus + sec;
      if (lba >= r->sectors) return -1;
      const uint8_t *b = r->cur + lba * PIFS_SECTOR;
      for (int i = 0; i < 16; i++) {
        const uint8_t *e = b + 32 * i;
        if (e[0] == 0x00) return n;
        if (e[0] == 0xE5) continue;
        if (n == MAX_DENT) return -1;
        memcpy(out[n++], e, 32);
      }
    }
    uint64_t fl = v->part_lba + v->reserved + c / 128u;
    if (fl >= r->sectors) return -1;
    uint32_t next = ld32(r->cur + fl * PIFS_SECTOR + (c % 128u) * 4u) & 0x0FFFFFFFu;
    if (next >= 0x0FFFFFF8u) return n;
    c = next;
  }
  return -1;
}

/* Every entry that was in the root directory is still there, unchanged
 * (new ones may have come). */
static void check_root_kept(const struct ramdisk *r, const struct fat32_vol *v, int nbefore, const char *what) {
  if (nbefore <= 0) return;
  int nafter = root_entries(r, v, dent_after);
  for (int i = 0; i < nbefore; i++) {
    int found = 0;
    for (int j = 0; j < nafter && !found; j++) found = !memcmp(dent_before[i], dent_after[j], 32);
    if (!found) {
      fprintf(stderr, "\n%s lost the root directory entry '%.11s'\n", what, (const char *)dent_before[i]);
      die("a root directory entry was lost or changed", i, nafter);
    }
  }
}

static void list_cb(void *ctx, const uint8_t id[32], uint32_t size) {
  (void)size;
  uint8_t *first = ctx;
  if (!first[32]) {
    memcpy(first, id, 32);
    first[32] = 1;
  }
}

static void bad_cb(void *ctx, const uint8_t id[32], int err) {
  (void)ctx;
  (void)id;
  if (err >= 0) die("scrub reported a bad chunk with no error", err, 0);
}

/* Reading an open store: listing, scrubbing, a get, the journal. */
static void exercise(struct pifs_store *s, uint8_t first[33]) {
  struct pifs_store_info in;
  store_info(s, &in);
  uint32_t cur = 0;
  for (int page = 0; page < 64 && cur != 0xFFFFFFFFu; page++) {
    uint32_t before = cur;
    if (store_list(s, &cur, 16, list_cb, first)) break;
    if (cur != 0xFFFFFFFFu && cur <= before && page) die("store_list cursor went backwards", before, cur);
  }
  cur = 0;
  for (int i = 0; i < 2 && cur != 0xFFFFFFFFu; i++) {
    uint32_t checked = 0;
    if (store_scrub(s, &cur, 2, &checked, bad_cb, NULL)) break;
    if (checked > 2) die("store_scrub checked more than asked", checked, 2);
  }
  if (first[32]) {
    static uint8_t buf[4096];
    uint32_t size = 0;
    if (store_has(s, first, &size)) die("a listed chunk is not there", 0, 0);
    store_get(s, first, 0, buf, size < sizeof buf ? size : sizeof buf, &size);
  }
  uint8_t jb[256];
  uint32_t got;
  uint64_t jl;
  if (store_journal_read(s, 0, jb, sizeof jb, &got, &jl) == 0 && got > sizeof jb)
    die("journal read overran its buffer", got, sizeof jb);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  uint8_t fl = data[0];
  int b = fl & 3;
  if (b == 3) b = 1;
  struct base *B = &bases[b];
  struct ramdisk *r = &B->rd;
  struct pifs_bdev *bd = &r->bd;
  uint32_t nonce = crc32c(data, size); /* no card can guess it */
  rd_restore(r);

  /* The input changes the card. */
  const uint8_t *p = data + 1;
  size_t left = size - 1;
  for (int k = 0; k < NKEY && left; k++) {
    uint32_t n = left < PIFS_SECTOR ? (uint32_t)left : PIFS_SECTOR;
    rd_patch(r, B->key[k], 0, p, n);
    p += n;
    left -= n;
  }

  /* Read-only looks: mount, find the store, open. */
  r->writes_forbidden = 1;
  r->why = "a read-only call wrote to the card";
  struct fat32_vol v;
  memset(&v, 0, sizeof v);
  int merr = fat32_mount(&v, bd);
  uint64_t slba = 0, ssec = 0;
  int ferr = merr ? merr : fat32_find_store(&v, &slba, &ssec);
  struct pifs_store *s = NULL;
  int err = store_open(&s, bd);
  if (merr && err != merr) die("store_open and fat32_mount disagree", err, merr);
  if (err && s) die("store_open failed but gave a store", err, 0);
  if (verbose)
    fprintf(stderr, "  card %d flags 0x%02x: fat32_mount %s / find_store %s / store_open %s%s%s\n", b, fl,
            pifs_err_to_str(merr), pifs_err_to_str(ferr), pifs_err_to_str(err), merr ? ": " : "",
            merr ? fat32_reason() : "");

  /* From here writes are allowed only inside the volume, past the reserved
   * sectors, or to FSInfo. */
  rd_policy_none(r);
  if (!merr) {
    rd_restrict(r, "write to the MBR, the boot sector, a reserved sector or outside the volume");
    rd_allow(r, v.part_lba + v.reserved, v.part_lba + v.total_sectors);
    if (v.fsinfo_sec) rd_allow(r, v.part_lba + v.fsinfo_sec, v.part_lba + v.fsinfo_sec + 1);
  } else {
    r->writes_forbidden = 1;
    r->why = "write to a card that fat32_mount refused";
  }

  int nroot = merr ? -1 : root_entries(r, &v, dent_before);

  if (err == PIFS_OK) {
    uint8_t first[33] = {0};
    exercise(s, first);
    if (fl & 0x20) { /* a write workload, then a remount */
      uint8_t buf[1000], id[32];
      int committed;
      for (uint32_t i = 0; i < sizeof buf; i++) buf[i] = (uint8_t)(nonce >> (8 * (i & 3))) ^ (uint8_t)i;
      put_bytes(s, buf, sizeof buf, id, &committed);
      struct pifs_store_info in;
      store_info(s, &in);
      uint64_t jl;
      store_journal_append(s, in.journal_len, buf, 16, &jl);
      if (first[32] && memcmp(first, id, 32)) store_delete(s, first);
      store_close(s);
      s = NULL;
      if (store_open(&s, bd) == 0) {
        if (committed && store_has(s, id, NULL)) die("a committed chunk is gone after a remount", 0, 0);
        memset(first, 0, sizeof first);
        exercise(s, first);
      }
    }
    store_close(s);
    s = NULL;
    if ((fl & 0x10) && !merr) { /* grow STORE.DAT as far as it goes */
      uint64_t grown = 0;
      struct fat32_vol gv = v;
      int ge = fat32_grow_store(&gv, 0, 0, &grown);
      check_root_kept(r, &v, nroot, "fat32_grow_store");
      if (verbose) fprintf(stderr, "  grow: %s, %llu -> %llu sectors\n", pifs_err_to_str(ge), (unsigned long long)ssec, (unsigned long long)grown);
      if (ge == 0) {
        if (grown < ssec) die("grow made the store smaller", (long long)ssec, (long long)grown);
        uint64_t l2, n2;
        if (fat32_find_store(&gv, &l2, &n2)) die("STORE.DAT is gone after a grow", 0, 0);
        if (l2 != slba || n2 != grown) die("STORE.DAT moved or has another size after a grow", (long long)n2, (long long)grown);
        if (store_open(&s, bd) == 0) store_close(s);
        s = NULL;
      }
    }
  } else if (err == PIFS_EUNFORMATTED) {
    if (ferr == 0) { /* STORE.DAT without a valid superblock: not ours */
      uint8_t save = r->writes_forbidden;
      r->writes_forbidden = 1;
      r->why = "store_format without force wrote to a card whose STORE.DAT is not ours";
      struct pifs_format_opts o = opts(0, 0, 0, nonce);
      if (store_format(&s, bd, &o) == 0) die("store_format without force took a STORE.DAT that is not ours", 0, 0);
      r->writes_forbidden = save;
      r->why = "write to the MBR, the boot sector, a reserved sector or outside the volume";
    }
    struct pifs_format_opts o = opts(fl & 0x08 ? 4096 : 0, 1024, !!(fl & 0x04), nonce);
    int fe = store_format(&s, bd, &o);
    check_root_kept(r, &v, nroot, "store_format");
    if (verbose) fprintf(stderr, "  store_format(force %d, size %llu): %s, %llu sectors written\n", o.force,
                         (unsigned long long)o.size_sectors, pifs_err_to_str(fe), (unsigned long long)r->writes);
    if (fe == 0) {
      struct pifs_store_info a, c;
      store_info(s, &a);
      store_close(s);
      s = NULL;
      int oe = store_open(&s, bd);
      if (oe) die("a store that store_format made does not open", oe, 0);
      store_info(s, &c);
      if (a.store_lba != c.store_lba || a.store_sectors != c.store_sectors || memcmp(a.cluster_id, c.cluster_id, 16))
        die("the store opened elsewhere than store_format made it", (long long)a.store_lba, (long long)c.store_lba);
      uint8_t first[33] = {0};
      exercise(s, first);
      store_close(s);
      s = NULL;
    } else if (s) {
      die("store_format failed but gave a store", fe, 0);
    }
  } else { /* refused */
    r->writes_forbidden = 1;
    r->why = "store_format without force wrote to a refused card";
    struct pifs_format_opts o = opts(0, 0, 0, nonce);
    if (store_format(&s, bd, &o) == 0) die("store_format without force took a refused card", err, 0);
    if (merr || (ferr && ferr != PIFS_ENOENT)) {
      r->why = "store_format with force wrote to a card refused by its FAT volume";
      o.force = 1;
      if (store_format(&s, bd, &o) == 0) die("store_format with force took a card refused by its FAT volume", err, 0);
    }
  }

  if (fl & 0x40) {
    static uint8_t fb[65536];
    uint32_t len = 0;
    r->writes_forbidden = 1;
    r->why = "fat32_read_file wrote to the card";
    if (!merr) {
      struct fat32_vol rv;
      memset(&rv, 0, sizeof rv);
      if (fat32_mount(&rv, bd) == 0) {
        fat32_read_file(&rv, "PIFS/STORE.DAT", fb, sizeof fb, &len);
        fat32_read_file(&rv, "CONFIG.TXT", fb, sizeof fb, &len);
        fat32_read_file(&rv, "PIFS/../PIFS/NODE.IMG", fb, sizeof fb, &len);
        uint32_t nfree;
        fat32_count_free(&rv, &nfree);
      }
    }
  }
  rd_restore(r);
  return 0;
}
