/* A RAM card for the C tests: a FAT32 image made by mkfs.fat, held in
 * memory, with a sector-write budget after which "the power goes" (writes
 * fail, the write that crosses the budget is torn at a sector boundary). */
#ifndef PIFS_RAMCARD_H
#define PIFS_RAMCARD_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pifs.h"

struct ram {
  uint8_t *base; /* the image as made by mkfs.fat */
  uint8_t *cur;  /* current content */
  uint64_t sectors;
  long budget;      /* sector writes left before the power goes; <0: unlimited */
  long writes;      /* sectors written */
  int dead;         /* power is off: every write fails */
};

static int ram_read(void *ctx, uint64_t lba, uint32_t n, void *buf) {
  struct ram *r = ctx;
  if (lba + n > r->sectors) return PIFS_EIO;
  memcpy(buf, r->cur + lba * 512, (size_t)n * 512);
  return 0;
}

static int ram_write(void *ctx, uint64_t lba, uint32_t n, const void *buf) {
  struct ram *r = ctx;
  if (lba + n > r->sectors || r->dead) return PIFS_EIO;
  for (uint32_t i = 0; i < n; i++) {
    if (r->budget == 0) { /* the power goes in the middle of this write */
      r->dead = 1;
      return PIFS_EIO;
    }
    memcpy(r->cur + (lba + i) * 512, (const uint8_t *)buf + (size_t)i * 512, 512);
    r->writes++;
    if (r->budget > 0) r->budget--;
  }
  return 0;
}

static int ram_flush(void *ctx) {
  struct ram *r = ctx;
  return r->dead ? PIFS_EIO : 0;
}

static struct ram card;
static struct pifs_bdev bd = {&card, 0, ram_read, ram_write, ram_flush};

/* Makes a 40 MiB superfloppy FAT32 image with mkfs.fat, into RAM. */
static int make_card(void) {
  char path[] = "/tmp/pifs-store-XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) return -1;
  close(fd);
  char cmd[512];
  snprintf(cmd, sizeof cmd, "truncate -s 40M %s && mkfs.fat -F 32 -s 1 %s >/dev/null", path, path);
  if (system(cmd)) return -1;
  FILE *f = fopen(path, "rb");
  card.sectors = 40u * 2048u;
  card.base = malloc(card.sectors * 512);
  card.cur = malloc(card.sectors * 512);
  size_t got = fread(card.base, 512, card.sectors, f);
  fclose(f);
  unlink(path);
  if (got != card.sectors) return -1;
  memcpy(card.cur, card.base, card.sectors * 512);
  bd.sectors = card.sectors;
  card.budget = -1;
  return 0;
}

#endif
