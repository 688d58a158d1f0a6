/* A RAM card for the fuzz targets: a pristine image (base) and the working
 * copy (cur) that the core reads and writes. Every sector that changes in cur
 * is put on a dirty list, so resetting cur to base between two runs copies
 * only those sectors back. Writes can be restricted to a set of sectors: one
 * outside it aborts (the core must never write there). */
#ifndef PIFS_FUZZ_RAMDISK_H
#define PIFS_FUZZ_RAMDISK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pifs.h"

struct ramdisk {
  uint8_t *base, *cur;
  uint64_t sectors;
  uint8_t *dirty;  /* one bit per sector */
  uint32_t *list;  /* dirty sectors, in the order they first changed */
  uint32_t nlist;
  uint64_t writes; /* sectors written through the block device */
  /* Write policy: writes_forbidden aborts on any write; when restricted, a
   * write must fall in one of the nallow ranges [lo, hi). */
  int writes_forbidden;
  int restricted;
  struct {
    uint64_t lo, hi;
  } allow[8];
  int nallow;
  const char *why; /* what the policy protects, for the abort message */
  struct pifs_bdev bd;
};

static inline void rd_die(const char *msg, uint64_t a, uint64_t b) {
  fprintf(stderr, "\nINVARIANT BROKEN: %s (%llu, %llu)\n", msg, (unsigned long long)a,
          (unsigned long long)b);
  abort();
}

static inline void rd_mark(struct ramdisk *r, uint64_t lba) {
  if (!(r->dirty[lba >> 3] & (1u << (lba & 7)))) {
    r->dirty[lba >> 3] |= (uint8_t)(1u << (lba & 7));
    r->list[r->nlist++] = (uint32_t)lba;
  }
}

static inline int rd_read(void *ctx, uint64_t lba, uint32_t n, void *buf) {
  struct ramdisk *r = ctx;
  if (lba > r->sectors || n > r->sectors - lba) return PIFS_EIO;
  memcpy(buf, r->cur + lba * PIFS_SECTOR, (size_t)n * PIFS_SECTOR);
  return 0;
}

static inline int rd_write(void *ctx, uint64_t lba, uint32_t n, const void *buf) {
  struct ramdisk *r = ctx;
  if (lba > r->sectors || n > r->sectors - lba) return PIFS_EIO;
  for (uint32_t i = 0; i < n; i++) {
    uint64_t s = lba + i;
    if (r->writes_forbidden) rd_die(r->why ? r->why : "write to a card that must not be written", s, n);
    if (r->restricted) {
      int ok = 0;
      for (int k = 0; k < r->nallow && !ok; k++) ok = s >= r->allow[k].lo && s < r->allow[k].hi;
      if (!ok) rd_die(r->why ? r->why : "write outside the allowed sectors", s, n);
    }
    rd_mark(r, s);
  }
  memcpy(r->cur + lba * PIFS_SECTOR, buf, (size_t)n * PIFS_SECTOR);
  r->writes += n;
  return 0;
}

static inline int rd_flush(void *ctx) {
  (void)ctx;
  return 0;
}

static inline void rd_policy_none(struct ramdisk *r) {
  r->writes_forbidden = 0;
  r->restricted = 0;
  r->nallow = 0;
  r->why = NULL;
}

/* Restricts writes to the ranges given with rd_allow. */
static inline void rd_restrict(struct ramdisk *r, const char *why) {
  rd_policy_none(r);
  r->restricted = 1;
  r->why = why;
}

static inline void rd_allow(struct ramdisk *r, uint64_t lo, uint64_t hi) {
  if (r->nallow < (int)(sizeof r->allow / sizeof r->allow[0])) {
    r->allow[r->nallow].lo = lo;
    r->allow[r->nallow].hi = hi;
    r->nallow++;
  }
}

/* Overwrites part of a sector without counting it as a device write (the
 * fuzz input changing the card before the core sees it). */
static inline void rd_patch(struct ramdisk *r, uint64_t lba, uint32_t off, const uint8_t *p, uint32_t n) {
  if (lba >= r->sectors || off + n > PIFS_SECTOR) return;
  rd_mark(r, lba);
  memcpy(r->cur + lba * PIFS_SECTOR + off, p, n);
}

/* Copies the dirty sectors from src to dst and empties the dirty list. */
static inline void rd_sync(struct ramdisk *r, uint8_t *dst, const uint8_t *src) {
  for (uint32_t i = 0; i < r->nlist; i++) {
    uint64_t s = r->list[i];
    memcpy(dst + s * PIFS_SECTOR, src + s * PIFS_SECTOR, PIFS_SECTOR);
    r->dirty[s >> 3] = 0;
  }
  r->nlist = 0;
  r->writes = 0;
}

/* cur := base, copying back only the sectors that changed. */
static inline void rd_restore(struct ramdisk *r) {
  rd_sync(r, r->cur, r->base);
  rd_policy_none(r);
}

/* base := cur (after the harness set the card up). */
static inline void rd_commit(struct ramdisk *r) { rd_sync(r, r->base, r->cur); }

static inline void rd_init(struct ramdisk *r, uint64_t sectors) {
  memset(r, 0, sizeof *r);
  r->sectors = sectors;
  r->base = calloc(sectors, PIFS_SECTOR);
  r->cur = calloc(sectors, PIFS_SECTOR);
  r->dirty = calloc((sectors + 7) / 8, 1);
  r->list = calloc(sectors, sizeof *r->list);
  if (!r->base || !r->cur || !r->dirty || !r->list) rd_die("out of memory for the RAM card", sectors, 0);
  r->bd.ctx = r;
  r->bd.sectors = sectors;
  r->bd.read = rd_read;
  r->bd.write = rd_write;
  r->bd.flush = rd_flush;
}

/* Runs mkfs.fat on a temp file of `sectors` sectors (the FAT32 volume at
 * sector `offset`, size_kib KiB when offset is set) and loads it as base and
 * cur. --invariant keeps the volume id and dates fixed, so the image (and the
 * seed corpus made from it) is the same on every run. */
static inline void rd_mkfs(struct ramdisk *r, uint64_t sectors, uint32_t offset) {
  char path[] = "/tmp/pifs-fuzz-XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) rd_die("mkstemp failed", 0, 0);
  close(fd);
  char cmd[512];
  if (offset)
    snprintf(cmd, sizeof cmd,
             "truncate -s %llu %s && mkfs.fat -F 32 -s 1 --invariant --offset %u %s %llu >/dev/null",
             (unsigned long long)sectors * PIFS_SECTOR, path, offset, path,
             (unsigned long long)(sectors - offset) / 2);
  else
    snprintf(cmd, sizeof cmd, "truncate -s %llu %s && mkfs.fat -F 32 -s 1 --invariant %s >/dev/null",
             (unsigned long long)sectors * PIFS_SECTOR, path, path);
  if (system(cmd)) {
    unlink(path);
    rd_die("mkfs.fat failed (is dosfstools installed?)", 0, 0);
  }
  rd_init(r, sectors);
  FILE *f = fopen(path, "rb");
  size_t got = f ? fread(r->base, PIFS_SECTOR, sectors, f) : 0;
  if (f) fclose(f);
  unlink(path);
  if (got != sectors) rd_die("short read of the mkfs.fat image", got, sectors);
  memcpy(r->cur, r->base, sectors * PIFS_SECTOR);
}

#endif
