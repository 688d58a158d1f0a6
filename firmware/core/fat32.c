/* FAT32 volume access for the node core (see fat32.h).
 *
 * Written from the Microsoft FAT specification (FAT32 File System
 * Specification, 1.03). All on-disk fields are read and written by byte
 * offset through ld16/ld32/st16/st32; all I/O goes through struct pifs_bdev.
 * Sector buffers live on the stack; the module is not reentrant only in that
 * fat32_reason() keeps the last refusal in a static pointer. */
#include "fat32.h"

#include <string.h>

/* ---- on-disk layout --------------------------------------------------- */

/* Boot sector / BPB (byte offsets). */
#define BS_JMP 0
#define BS_OEM 3
#define BPB_BYTSPERSEC 11
#define BPB_SECPERCLUS 13
#define BPB_RSVDSECCNT 14
#define BPB_NUMFATS 16
#define BPB_ROOTENTCNT 17
#define BPB_TOTSEC16 19
#define BPB_FATSZ16 22
#define BPB_TOTSEC32 32
#define BPB_FATSZ32 36
#define BPB_FSVER 42
#define BPB_ROOTCLUS 44
#define BPB_FSINFO 48
#define BS_SIG 510

/* MBR partition table. */
#define MBR_PART0 446
#define MBR_PE_TYPE 4
#define MBR_PE_LBA 8
#define MBR_PE_SIZE 12

/* FSInfo sector. */
#define FSI_LEADSIG 0
#define FSI_STRUCSIG 484
#define FSI_FREE_COUNT 488
#define FSI_NXT_FREE 492
#define FSI_TRAILSIG 508
#define FSI_LEAD_VAL 0x41615252u
#define FSI_STRUC_VAL 0x61417272u
#define FSI_TRAIL_VAL 0xAA550000u

/* Directory entry (32 bytes). */
#define DIR_NAME 0
#define DIR_ATTR 11
#define DIR_NTRES 12
#define DIR_CRTTIMETENTH 13
#define DIR_CRTTIME 14
#define DIR_CRTDATE 16
#define DIR_LSTACCDATE 18
#define DIR_FSTCLUSHI 20
#define DIR_WRTTIME 22
#define DIR_WRTDATE 24
#define DIR_FSTCLUSLO 26
#define DIR_FILESIZE 28
#define DIR_ENT 32u
#define ENTS_PER_SEC (PIFS_SECTOR / DIR_ENT)

#define ATTR_READ_ONLY 0x01
#define ATTR_HIDDEN 0x02
#define ATTR_SYSTEM 0x04
#define ATTR_VOLUME_ID 0x08
#define ATTR_DIRECTORY 0x10
#define ATTR_ARCHIVE 0x20
#define ATTR_LONG_NAME 0x0F
#define ATTR_LONG_NAME_MASK 0x3F

#define DIRENT_FREE 0xE5
#define DIRENT_END 0x00

/* FAT entries. */
#define FAT_MASK 0x0FFFFFFFu
#define FAT_HIGH 0xF0000000u
#define FAT_EOC 0x0FFFFFFFu
#define FAT_EOC_MIN 0x0FFFFFF8u
#define FAT_ENTS_PER_SEC (PIFS_SECTOR / 4u)
#define FAT32_MIN_CLUSTERS 65525u
#define FAT32_MAX_CLUSTERS 0x0FFFFFF5u /* clusters 2 .. 0x0FFFFFF6 */

/* 2026-01-01 00:00 in FAT encoding: ((year-1980) << 9) | (month << 5) | day. */
#define DEFAULT_DATE ((uint16_t)(((2026 - 1980) << 9) | (1 << 5) | 1))
#define DEFAULT_TIME ((uint16_t)0)

static const uint8_t NAME_PIFS[11] = {'P', 'I', 'F', 'S', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
static const uint8_t NAME_STORE[11] = {'S', 'T', 'O', 'R', 'E', ' ', ' ', ' ', 'D', 'A', 'T'};

/* ---- refusal reasons -------------------------------------------------- */

/* fat32_reason() must return a static string, yet name the offending values,
 * so the message is formatted into a static buffer (no libc printf in core). */
static char reason_buf[128];
static const char *reason_str = "no volume mounted yet";

struct rb {
  char *p;
  size_t n, cap;
};

static void rb_str(struct rb *b, const char *s) {
  while (*s && b->n + 1 < b->cap) b->p[b->n++] = *s++;
  b->p[b->n] = 0;
}

static void rb_dec(struct rb *b, uint64_t v) {
  char t[21];
  int i = 0;
  do {
    t[i++] = (char)('0' + (int)(v % 10));
    v /= 10;
  } while (v && i < 20);
  while (i > 0 && b->n + 1 < b->cap) b->p[b->n++] = t[--i];
  b->p[b->n] = 0;
}

static void rb_hex2(struct rb *b, unsigned v) {
  static const char hx[] = "0123456789ABCDEF";
  char t[5] = {'0', 'x', hx[(v >> 4) & 15], hx[v & 15], 0};
  rb_str(b, t);
}

/* Formats a reason: fmt is a string where %d takes the next uint64_t argument
 * as decimal and %x the next as a two-digit hex byte ("0x0B"). */
static int refuse(int err, const char *fmt, uint64_t a0, uint64_t a1, uint64_t a2) {
  struct rb b = {reason_buf, 0, sizeof reason_buf};
  uint64_t args[3] = {a0, a1, a2};
  unsigned ai = 0;
  char one[2] = {0, 0};
  reason_buf[0] = 0;
  for (; *fmt; fmt++) {
    if (fmt[0] == '%' && (fmt[1] == 'd' || fmt[1] == 'x')) {
      uint64_t a = ai < 3 ? args[ai] : 0;
      ai++;
      if (fmt[1] == 'd')
        rb_dec(&b, a);
      else
        rb_hex2(&b, (unsigned)a);
      fmt++;
    } else {
      one[0] = *fmt;
      rb_str(&b, one);
    }
  }
  reason_str = reason_buf;
  return err;
}

const char *fat32_reason(void) { return reason_str; }

/* ---- block I/O -------------------------------------------------------- */

static int io_err(int r) { return r < 0 ? r : PIFS_EIO; }

static int bd_read(struct pifs_bdev *bd, uint64_t lba, uint32_t n, void *buf) {
  if (lba >= bd->sectors || n > bd->sectors - lba) return PIFS_EIO;
  int r = bd->read(bd->ctx, lba, n, buf);
  return r ? io_err(r) : 0;
}

static int bd_write(struct pifs_bdev *bd, uint64_t lba, uint32_t n, const void *buf) {
  if (lba >= bd->sectors || n > bd->sectors - lba) return PIFS_EIO;
  int r = bd->write(bd->ctx, lba, n, buf);
  return r ? io_err(r) : 0;
}

/* Volume-relative sector I/O. */
static int vrd(struct fat32_vol *v, uint32_t rel, uint32_t n, void *buf) {
  return bd_read(v->bd, v->part_lba + rel, n, buf);
}
static int vwr(struct fat32_vol *v, uint32_t rel, uint32_t n, const void *buf) {
  return bd_write(v->bd, v->part_lba + rel, n, buf);
}

static uint32_t clus_bytes(const struct fat32_vol *v) { return v->sec_per_clus * PIFS_SECTOR; }

static uint32_t clus_sector(const struct fat32_vol *v, uint32_t clus) {
  return v->data_start + (clus - 2u) * v->sec_per_clus;
}

static int clus_valid(const struct fat32_vol *v, uint32_t c) { return c >= 2u && c <= v->nclusters + 1u; }

/* ---- mount ------------------------------------------------------------ */

static int is_pow2(uint32_t x) { return x && !(x & (x - 1)); }

static int has_sig(const uint8_t *s) { return s[BS_SIG] == 0x55 && s[BS_SIG + 1] == 0xAA; }

static int is_exfat(const uint8_t *s) { return memcmp(s + BS_OEM, "EXFAT   ", 8) == 0; }

static int has_jump(const uint8_t *s) { return (s[0] == 0xEB && s[2] == 0x90) || s[0] == 0xE9; }

/* Does sector 0 look like a FAT boot sector rather than an MBR? */
static int looks_like_bpb(const uint8_t *s) {
  uint32_t bps = ld16(s + BPB_BYTSPERSEC);
  if (!has_jump(s)) return 0;
  if (bps != 512 && bps != 1024 && bps != 2048 && bps != 4096) return 0;
  if (!is_pow2(s[BPB_SECPERCLUS])) return 0;
  return s[BPB_NUMFATS] == 1 || s[BPB_NUMFATS] == 2;
}

static int is_fat1216_type(uint8_t t) { return t == 0x01 || t == 0x04 || t == 0x06 || t == 0x0E; }

/* Validates the boot sector s of the volume at v->part_lba (part_sectors: the
 * partition size, 0 for a superfloppy) and fills the geometry. */
static int parse_bpb(struct fat32_vol *v, const uint8_t *s, uint64_t part_sectors) {
  if (!has_sig(s)) return refuse(PIFS_EBADSIG, "boot sector has no 0x55AA signature", 0, 0, 0);
  if (is_exfat(s)) return refuse(PIFS_EEXFAT, "volume is exFAT", 0, 0, 0);
  if (!has_jump(s)) return refuse(PIFS_EBPB, "BPB: no jump instruction at offset 0 (not a FAT boot sector)", 0, 0, 0);

  uint32_t bps = ld16(s + BPB_BYTSPERSEC);
  uint32_t spc = s[BPB_SECPERCLUS];
  uint32_t rsvd = ld16(s + BPB_RSVDSECCNT);
  uint32_t nfats = s[BPB_NUMFATS];
  uint32_t rootent = ld16(s + BPB_ROOTENTCNT);
  uint32_t tot16 = ld16(s + BPB_TOTSEC16);
  uint32_t fatsz16 = ld16(s + BPB_FATSZ16);
  uint32_t tot32 = ld32(s + BPB_TOTSEC32);
  uint32_t fatsz32 = ld32(s + BPB_FATSZ32);
  uint32_t rootclus = ld32(s + BPB_ROOTCLUS);
  uint32_t fsinfo = ld16(s + BPB_FSINFO);

  if (bps != 512) return refuse(PIFS_ESECTOR, "bytes per sector is %d, not 512", bps, 0, 0);
  if (!is_pow2(spc) || spc > 128)
    return refuse(PIFS_EBPB, "BPB: sectors per cluster is %d (must be a power of two 1..128)", spc, 0, 0);
  if (rsvd == 0) return refuse(PIFS_EBPB, "BPB: reserved sector count is 0", 0, 0, 0);
  if (nfats < 1 || nfats > 2) return refuse(PIFS_EBPB, "BPB: number of FATs is %d (must be 1 or 2)", nfats, 0, 0);

  uint64_t totsec = tot16 ? tot16 : tot32;
  uint64_t fatsz = fatsz16 ? fatsz16 : fatsz32;
  uint64_t rootsecs = ((uint64_t)rootent * DIR_ENT + bps - 1) / bps;
  uint64_t meta = rsvd + (uint64_t)nfats * fatsz + rootsecs;
  uint64_t nclus = totsec > meta ? (totsec - meta) / spc : 0;

  if (rootent != 0 || fatsz16 != 0) {
    if (nclus < 4085)
      return refuse(PIFS_EFAT1216, "volume is FAT12 (%d clusters, %d root entries)", nclus, rootent, 0);
    return refuse(PIFS_EFAT1216, "volume is FAT16 (%d clusters, %d root entries)", nclus, rootent, 0);
  }
  if (fatsz32 == 0) return refuse(PIFS_EBPB, "BPB: FAT size is 0", 0, 0, 0);
  if (totsec == 0) return refuse(PIFS_EBPB, "BPB: total sector count is 0", 0, 0, 0);
  if (meta >= totsec)
    return refuse(PIFS_EBPB, "BPB: reserved + FAT sectors (%d) exceed the volume (%d sectors)", meta, totsec, 0);
  if (nclus < FAT32_MIN_CLUSTERS)
    return refuse(PIFS_EFAT1216, "volume has only %d clusters: too few for FAT32 (a FAT16-sized volume)", nclus, 0,
                  0);
  if (nclus > FAT32_MAX_CLUSTERS) return refuse(PIFS_EBPB, "BPB: %d clusters is too many for FAT32", nclus, 0, 0);
  if (fatsz32 * (uint64_t)FAT_ENTS_PER_SEC < nclus + 2)
    return refuse(PIFS_EBPB, "BPB: FAT of %d sectors is too small for %d clusters", fatsz32, nclus, 0);
  if (ld16(s + BPB_FSVER) != 0)
    return refuse(PIFS_EBPB, "BPB: FAT32 version is %d.%d, not 0.0", s[BPB_FSVER + 1], s[BPB_FSVER], 0);
  if (totsec > v->bd->sectors - v->part_lba)
    return refuse(PIFS_EBPB, "BPB: volume is %d sectors but the device has only %d from the boot sector on", totsec,
                  v->bd->sectors - v->part_lba, 0);
  if (part_sectors && totsec > part_sectors)
    return refuse(PIFS_EBPB, "BPB: volume is %d sectors but its partition has only %d", totsec, part_sectors, 0);
  if (rootclus < 2 || rootclus > nclus + 1)
    return refuse(PIFS_EBPB, "BPB: root cluster %d is outside 2..%d", rootclus, nclus + 1, 0);

  v->total_sectors = (uint32_t)totsec;
  v->sec_per_clus = spc;
  v->reserved = rsvd;
  v->nfats = nfats;
  v->fat_sz = fatsz32;
  v->root_clus = rootclus;
  /* An FSInfo pointer outside the reserved area is ignored (never written). */
  v->fsinfo_sec = (fsinfo >= 1 && fsinfo < rsvd) ? fsinfo : 0;
  v->data_start = (uint32_t)meta;
  v->nclusters = (uint32_t)nclus;
  return 0;
}

int fat32_mount(struct fat32_vol *v, struct pifs_bdev *bd) {
  uint8_t s[PIFS_SECTOR];
  uint16_t nd = v->now_date, nt = v->now_time; /* the caller may set these first */
  int r;

  memset(v, 0, sizeof *v);
  v->now_date = nd;
  v->now_time = nt;
  v->bd = bd;
  if (!bd || bd->sectors == 0) return refuse(PIFS_EIO, "block device is empty", 0, 0, 0);
  if ((r = bd_read(bd, 0, 1, s)) != 0) return refuse(r, "cannot read sector 0", 0, 0, 0);
  if (!has_sig(s)) return refuse(PIFS_EBADSIG, "sector 0 has no 0x55AA signature (blank or unformatted card)", 0, 0, 0);
  if (is_exfat(s)) return refuse(PIFS_EEXFAT, "volume is exFAT (no partition table)", 0, 0, 0);

  if (looks_like_bpb(s)) {
    v->superfloppy = 1;
    v->part_lba = 0;
    return parse_bpb(v, s, 0);
  }

  /* MBR: the first partition of type 0x0B/0x0C wins. */
  int pick = -1;
  for (int i = 0; i < 4; i++) {
    uint8_t t = s[MBR_PART0 + 16 * i + MBR_PE_TYPE];
    if (t == 0x0B || t == 0x0C) {
      pick = i;
      break;
    }
  }
  if (pick < 0) {
    /* No FAT32 partition: explain what is there instead. */
    int first_used = -1;
    for (int i = 0; i < 4; i++) {
      const uint8_t *pe = s + MBR_PART0 + 16 * i;
      uint8_t t = pe[MBR_PE_TYPE];
      if (t == 0) continue;
      if (first_used < 0) first_used = i;
      if (t == 0xEE) return refuse(PIFS_ENOTFAT32, "disk uses a GPT partition table (only MBR is supported)", 0, 0, 0);
      if (is_fat1216_type(t)) {
        const char *kind = t == 0x01 ? "partition %d is FAT12 (type %x)" : "partition %d is FAT16 (type %x)";
        return refuse(PIFS_EFAT1216, kind, (uint64_t)i + 1, t, 0);
      }
      if (t == 0x07) {
        uint8_t b[PIFS_SECTOR];
        uint32_t plba = ld32(pe + MBR_PE_LBA);
        if (plba && plba < bd->sectors && bd_read(bd, plba, 1, b) == 0 && is_exfat(b))
          return refuse(PIFS_EEXFAT, "partition %d is exFAT (type %x)", (uint64_t)i + 1, t, 0);
      }
    }
    if (first_used < 0) return refuse(PIFS_ENOTFAT32, "MBR has no partitions", 0, 0, 0);
    return refuse(PIFS_ENOTFAT32, "no FAT32 partition (partition %d has type %x)", (uint64_t)first_used + 1,
                  s[MBR_PART0 + 16 * first_used + MBR_PE_TYPE], 0);
  }

  const uint8_t *pe = s + MBR_PART0 + 16 * pick;
  uint32_t plba = ld32(pe + MBR_PE_LBA), psize = ld32(pe + MBR_PE_SIZE);
  if (plba == 0 || plba >= bd->sectors)
    return refuse(PIFS_ENOTFAT32, "partition %d starts at sector %d, outside the device", (uint64_t)pick + 1, plba,
                  0);
  if (psize == 0) return refuse(PIFS_ENOTFAT32, "partition %d has size 0", (uint64_t)pick + 1, 0, 0);
  v->part_lba = plba;
  if ((r = bd_read(bd, plba, 1, s)) != 0)
    return refuse(r, "cannot read the boot sector of partition %d", (uint64_t)pick + 1, 0, 0);
  if (!has_sig(s))
    return refuse(PIFS_EBADSIG, "boot sector of partition %d (type %x) has no 0x55AA signature", (uint64_t)pick + 1,
                  pe[MBR_PE_TYPE], 0);
  return parse_bpb(v, s, psize);
}

/* ---- FAT access ------------------------------------------------------- */

/* One-sector cache of FAT #1 for chain walks. */
struct fcache {
  uint32_t sec; /* FAT-relative sector in buf; UINT32_MAX: none */
  uint8_t buf[PIFS_SECTOR];
};

static void fc_init(struct fcache *c) { c->sec = UINT32_MAX; }

/* Raw FAT #1 entry of clus (all 32 bits). */
static int fat_raw(struct fat32_vol *v, struct fcache *c, uint32_t clus, uint32_t *out) {
  uint32_t sec = clus / FAT_ENTS_PER_SEC;
  if (sec >= v->fat_sz) return PIFS_ECORRUPT;
  if (c->sec != sec) {
    int r = vrd(v, v->reserved + sec, 1, c->buf);
    if (r) {
      c->sec = UINT32_MAX;
      return r;
    }
    c->sec = sec;
  }
  *out = ld32(c->buf + (clus % FAT_ENTS_PER_SEC) * 4u);
  return 0;
}

static int fat_get(struct fat32_vol *v, struct fcache *c, uint32_t clus, uint32_t *out) {
  int r = fat_raw(v, c, clus, out);
  if (!r) *out &= FAT_MASK;
  return r;
}

/* Next cluster in a chain: *next is 0 at the end of chain. Anything other than
 * a valid cluster or an end-of-chain mark is corruption. */
static int fat_next(struct fat32_vol *v, struct fcache *c, uint32_t clus, uint32_t *next) {
  uint32_t e;
  int r = fat_get(v, c, clus, &e);
  if (r) return r;
  if (e >= FAT_EOC_MIN) {
    *next = 0;
    return 0;
  }
  if (!clus_valid(v, e)) return PIFS_ECORRUPT;
  *next = e;
  return 0;
}

/* Sets the FAT entries first .. first+count-1 in every FAT copy: each one
 * points to the next cluster, the last gets last_val. The top 4 bits of every
 * entry are preserved. Written one FAT sector at a time per copy. */
static int fat_chain(struct fat32_vol *v, uint32_t first, uint32_t count, uint32_t last_val) {
  uint8_t b[PIFS_SECTOR];
  uint32_t end = first + count; /* exclusive */
  uint32_t c = first;
  while (c < end) {
    uint32_t sec = c / FAT_ENTS_PER_SEC;
    uint32_t sec_end = (sec + 1) * FAT_ENTS_PER_SEC;
    uint32_t stop = end < sec_end ? end : sec_end;
    if (sec >= v->fat_sz) return PIFS_ECORRUPT;
    for (uint32_t f = 0; f < v->nfats; f++) {
      uint32_t lba = v->reserved + f * v->fat_sz + sec;
      int r = vrd(v, lba, 1, b);
      if (r) return r;
      for (uint32_t k = c; k < stop; k++) {
        uint8_t *p = b + (k % FAT_ENTS_PER_SEC) * 4u;
        uint32_t val = (k + 1 == end) ? last_val : k + 1;
        st32(p, (ld32(p) & FAT_HIGH) | (val & FAT_MASK));
      }
      if ((r = vwr(v, lba, 1, b)) != 0) return r;
    }
    c = stop;
  }
  return 0;
}

/* Scan of FAT #1 over clusters 2 .. nclusters+1. Clusters in excl[] count as
 * used. Reports the total free count, the largest free run, and the first
 * run of at least want clusters (want 0: none looked for). */
struct fscan {
  uint32_t total_free;
  uint32_t best_start, best_len;
  uint32_t fit_start; /* 0: none */
};

static int fat_scan(struct fat32_vol *v, const uint32_t *excl, unsigned nexcl, uint32_t want, struct fscan *o) {
  uint8_t b[PIFS_SECTOR];
  uint32_t last = v->nclusters + 1;
  uint32_t run_start = 0, run_len = 0;
  memset(o, 0, sizeof *o);
  for (uint32_t sec = 0; sec * FAT_ENTS_PER_SEC <= last; sec++) {
    int r = vrd(v, v->reserved + sec, 1, b);
    if (r) return r;
    for (uint32_t i = 0; i < FAT_ENTS_PER_SEC; i++) {
      uint32_t c = sec * FAT_ENTS_PER_SEC + i;
      if (c < 2) continue;
      if (c > last) break;
      int is_free = (ld32(b + i * 4u) & FAT_MASK) == 0;
      for (unsigned x = 0; is_free && x < nexcl; x++)
        if (excl[x] == c) is_free = 0;
      if (is_free) {
        o->total_free++;
        if (run_len == 0) run_start = c;
        run_len++;
        if (run_len > o->best_len) {
          o->best_len = run_len;
          o->best_start = run_start;
        }
        if (want && !o->fit_start && run_len >= want) o->fit_start = run_start;
      } else {
        run_len = 0;
      }
    }
  }
  return 0;
}

/* Lowest free cluster not in excl[]; 0 if none. */
static int fat_find_free(struct fat32_vol *v, const uint32_t *excl, unsigned nexcl, uint32_t *out) {
  struct fcache fc;
  fc_init(&fc);
  for (uint32_t c = 2; c <= v->nclusters + 1; c++) {
    uint32_t e;
    int r = fat_get(v, &fc, c, &e);
    if (r) return r;
    if (e) continue;
    int used = 0;
    for (unsigned x = 0; x < nexcl; x++)
      if (excl[x] == c) used = 1;
    if (!used) {
      *out = c;
      return 0;
    }
  }
  *out = 0;
  return 0;
}

int fat32_count_free(struct fat32_vol *v, uint32_t *free_clusters) {
  struct fscan s;
  int r = fat_scan(v, 0, 0, 0, &s);
  if (r) return r;
  *free_clusters = s.total_free;
  return 0;
}

/* Recounts free clusters and rewrites FSInfo's free count and next-free hint.
 * The hint gets the last cluster allocated: Linux, mtools and most drivers
 * start searching after the hint, and under the spec's reading ("start
 * looking here") it costs one look at a used entry. An FSInfo sector with
 * bad signatures is left alone. */
static int fsinfo_update(struct fat32_vol *v, uint32_t hint) {
  uint8_t b[PIFS_SECTOR];
  uint32_t nfree;
  int r;
  if (!v->fsinfo_sec) return 0;
  if ((r = vrd(v, v->fsinfo_sec, 1, b)) != 0) return r;
  if (ld32(b + FSI_LEADSIG) != FSI_LEAD_VAL || ld32(b + FSI_STRUCSIG) != FSI_STRUC_VAL ||
      ld32(b + FSI_TRAILSIG) != FSI_TRAIL_VAL)
    return 0;
  if ((r = fat32_count_free(v, &nfree)) != 0) return r;
  st32(b + FSI_FREE_COUNT, nfree);
  st32(b + FSI_NXT_FREE, clus_valid(v, hint) ? hint : 0xFFFFFFFFu);
  return vwr(v, v->fsinfo_sec, 1, b);
}

static int bd_flush(struct fat32_vol *v) {
  if (!v->bd->flush) return 0;
  int r = v->bd->flush(v->bd->ctx);
  return r ? io_err(r) : 0;
}

/* ---- directories ------------------------------------------------------ */

/* Position of a directory entry. */
struct dpos {
  uint32_t clus, sec, idx; /* cluster, sector within it, entry within sector */
};

static uint32_t dpos_lba(const struct fat32_vol *v, const struct dpos *p) { return clus_sector(v, p->clus) + p->sec; }

/* Result of scanning one directory for an 8.3 name. */
struct dscan {
  int found;
  struct dpos pos;          /* of the match */
  uint8_t ent[DIR_ENT];     /* copy of the match */
  int have_slot;            /* a free slot exists */
  struct dpos slot;         /* first free slot (deleted or end marker) */
  int slot_is_end;          /* the slot is the 0x00 end marker */
  uint32_t last_clus;       /* last cluster of the chain (when fully walked) */
};

static uint32_t ent_clus(const uint8_t *e) {
  return ((uint32_t)ld16(e + DIR_FSTCLUSHI) << 16) | ld16(e + DIR_FSTCLUSLO);
}

/* Walks directory dclus (a cluster chain) looking for name (11 bytes, 8.3
 * space padded upper case). Deleted and long-name entries and the volume
 * label are skipped; 0x00 ends the directory. */
static int dir_scan(struct fat32_vol *v, uint32_t dclus, const uint8_t *name, struct dscan *o) {
  uint8_t b[PIFS_SECTOR];
  struct fcache fc;
  uint32_t clus = dclus, seen = 0;
  memset(o, 0, sizeof *o);
  fc_init(&fc);
  if (!clus_valid(v, dclus)) return PIFS_ECORRUPT;
  while (clus) {
    if (++seen > v->nclusters) return PIFS_ECORRUPT; /* loop in the chain */
    /* A cluster of a directory that the FAT calls free (or bad) means the
     * FAT and the tree disagree: a damaged card, refused before anything
     * could allocate that cluster a second time. */
    uint32_t self;
    int fr = fat_get(v, &fc, clus, &self);
    if (fr) return fr;
    if ((self & 0x0FFFFFFFu) == 0 || (self & 0x0FFFFFFFu) == 0x0FFFFFF7u) return PIFS_ECORRUPT;
    o->last_clus = clus;
    for (uint32_t sec = 0; sec < v->sec_per_clus; sec++) {
      int r = vrd(v, clus_sector(v, clus) + sec, 1, b);
      if (r) return r;
      for (uint32_t i = 0; i < ENTS_PER_SEC; i++) {
        const uint8_t *e = b + i * DIR_ENT;
        struct dpos here = {clus, sec, i};
        if (e[DIR_NAME] == DIRENT_END) {
          if (!o->have_slot) {
            o->have_slot = 1;
            o->slot = here;
            o->slot_is_end = 1;
          }
          return 0;
        }
        if (e[DIR_NAME] == DIRENT_FREE) {
          if (!o->have_slot) {
            o->have_slot = 1;
            o->slot = here;
          }
          continue;
        }
        if ((e[DIR_ATTR] & ATTR_LONG_NAME_MASK) == ATTR_LONG_NAME) continue;
        if (e[DIR_ATTR] & ATTR_VOLUME_ID) continue;
        /* 0x05 stands for a leading 0xE5 character. */
        uint8_t first = e[DIR_NAME] == 0x05 ? 0xE5 : e[DIR_NAME];
        if (first == name[0] && memcmp(e + 1, name + 1, 10) == 0) {
          o->found = 1;
          o->pos = here;
          memcpy(o->ent, e, DIR_ENT);
          return 0;
        }
      }
    }
    int r = fat_next(v, &fc, clus, &clus);
    if (r) return r;
  }
  return 0;
}

static void make_ent(const struct fat32_vol *v, uint8_t *e, const uint8_t *name, uint8_t attr, uint32_t clus,
                     uint32_t size) {
  uint16_t d = v->now_date ? v->now_date : DEFAULT_DATE;
  uint16_t t = v->now_date ? v->now_time : DEFAULT_TIME;
  memset(e, 0, DIR_ENT);
  memcpy(e + DIR_NAME, name, 11);
  e[DIR_ATTR] = attr;
  st16(e + DIR_CRTTIME, t);
  st16(e + DIR_CRTDATE, d);
  st16(e + DIR_LSTACCDATE, d);
  st16(e + DIR_FSTCLUSHI, (uint16_t)(clus >> 16));
  st16(e + DIR_WRTTIME, t);
  st16(e + DIR_WRTDATE, d);
  st16(e + DIR_FSTCLUSLO, (uint16_t)clus);
  st32(e + DIR_FILESIZE, size);
}

/* Writes cluster clus of a new directory: entries[] (n of them) at the start,
 * the rest zero. The cluster is free space, so writing it is harmless until
 * the FAT and a parent entry point to it. */
static int write_dir_cluster(struct fat32_vol *v, uint32_t clus, const uint8_t *entries, uint32_t n) {
  uint8_t b[PIFS_SECTOR];
  uint32_t done = 0;
  for (uint32_t sec = 0; sec < v->sec_per_clus; sec++) {
    memset(b, 0, sizeof b);
    for (uint32_t i = 0; i < ENTS_PER_SEC && done < n; i++, done++) memcpy(b + i * DIR_ENT, entries + done * DIR_ENT, DIR_ENT);
    int r = vwr(v, clus_sector(v, clus) + sec, 1, b);
    if (r) return r;
  }
  return 0;
}

/* Writes entry e into free slot p of a directory. When p was the 0x00 end
 * marker, the entry after it is made an end marker too (if it is not one
 * already), so nothing stale becomes visible. */
static int write_slot(struct fat32_vol *v, const struct dpos *p, int was_end, const uint8_t *e) {
  uint8_t b[PIFS_SECTOR];
  int r;
  if (was_end && p->idx + 1 == ENTS_PER_SEC) {
    struct dpos n = *p;
    int have = 1;
    n.idx = 0;
    if (p->sec + 1 < v->sec_per_clus) {
      n.sec = p->sec + 1;
    } else {
      struct fcache fc;
      uint32_t next;
      fc_init(&fc);
      if ((r = fat_next(v, &fc, p->clus, &next)) != 0) return r;
      have = next != 0;
      n.clus = next;
      n.sec = 0;
    }
    if (have) {
      if ((r = vrd(v, dpos_lba(v, &n), 1, b)) != 0) return r;
      if (b[0] != DIRENT_END) {
        memset(b, 0, DIR_ENT);
        if ((r = vwr(v, dpos_lba(v, &n), 1, b)) != 0) return r;
      }
    }
  }
  if ((r = vrd(v, dpos_lba(v, p), 1, b)) != 0) return r;
  memcpy(b + p->idx * DIR_ENT, e, DIR_ENT);
  if (was_end && p->idx + 1 < ENTS_PER_SEC && b[(p->idx + 1) * DIR_ENT] != DIRENT_END)
    memset(b + (p->idx + 1) * DIR_ENT, 0, DIR_ENT);
  return vwr(v, dpos_lba(v, p), 1, b);
}

/* ---- paths ------------------------------------------------------------ */

static uint8_t upcase(uint8_t c) { return (c >= 'a' && c <= 'z') ? (uint8_t)(c - 'a' + 'A') : c; }

static int bad_83_char(uint8_t c) {
  if (c < 0x20 || c == 0x7F) return 1;
  switch (c) {
    case '"': case '*': case '+': case ',': case '.': case '/': case ':': case ';':
    case '<': case '=': case '>': case '?': case '[': case '\\': case ']': case '|':
      return 1;
    default:
      return 0;
  }
}

/* Converts one path component s[0..n) ("NODE.IMG") to an 11-byte 8.3 name. */
static int to_83(const char *s, size_t n, uint8_t *out) {
  size_t i = 0, k = 0;
  memset(out, ' ', 11);
  if (n == 0 || s[0] == '.' || s[0] == ' ') return PIFS_EINVAL;
  for (; i < n && s[i] != '.'; i++) {
    uint8_t c = (uint8_t)s[i];
    if (k >= 8 || bad_83_char(c)) return PIFS_EINVAL;
    out[k++] = upcase(c);
  }
  if (i < n) { /* extension */
    i++;
    for (k = 8; i < n; i++) {
      uint8_t c = (uint8_t)s[i];
      if (k >= 11 || bad_83_char(c)) return PIFS_EINVAL;
      out[k++] = upcase(c);
    }
  }
  if (out[0] == 0xE5) out[0] = 0x05;
  return 0;
}

/* ---- store ------------------------------------------------------------ */

/* Location of STORE.DAT and its chain. */
struct storeinfo {
  struct dpos pos; /* its directory entry */
  uint8_t ent[DIR_ENT];
  uint32_t first, nclus; /* first cluster, chain length */
  uint32_t size;
};

/* Finds PIFS/STORE.DAT. Returns PIFS_ENOENT if PIFS or STORE.DAT is absent.
 * *pifs_clus gets the PIFS directory cluster (0 if absent); root and pd get
 * the scans of the root and of PIFS/ (pd only when PIFS/ exists), which
 * also tell where a new entry would go. */
static int store_lookup(struct fat32_vol *v, uint32_t *pifs_clus, struct dscan *root, struct dscan *pd) {
  int r;
  *pifs_clus = 0;
  if ((r = dir_scan(v, v->root_clus, NAME_PIFS, root)) != 0) return r;
  if (!root->found) return PIFS_ENOENT;
  if (!(root->ent[DIR_ATTR] & ATTR_DIRECTORY)) return PIFS_ENOTDIR;
  *pifs_clus = ent_clus(root->ent);
  if (!clus_valid(v, *pifs_clus)) return PIFS_ECORRUPT;
  if ((r = dir_scan(v, *pifs_clus, NAME_STORE, pd)) != 0) return r;
  return pd->found ? 0 : PIFS_ENOENT;
}

/* Finds STORE.DAT and checks it is one contiguous run ending in EOC whose
 * chain holds its size. */
static int store_get(struct fat32_vol *v, struct storeinfo *si) {
  struct dscan root, pd;
  struct fcache fc;
  uint32_t pifs, next;
  int r = store_lookup(v, &pifs, &root, &pd);
  if (r) return r;
  if (pd.ent[DIR_ATTR] & (ATTR_DIRECTORY | ATTR_VOLUME_ID)) return PIFS_ECORRUPT;
  si->pos = pd.pos;
  memcpy(si->ent, pd.ent, DIR_ENT);
  si->first = ent_clus(pd.ent);
  si->size = ld32(pd.ent + DIR_FILESIZE);
  if (!clus_valid(v, si->first)) return PIFS_ECORRUPT;
  fc_init(&fc);
  si->nclus = 0;
  for (uint32_t c = si->first;; c++) {
    si->nclus++;
    if ((r = fat_next(v, &fc, c, &next)) != 0) return r;
    if (next == 0) break;
    if (next != c + 1) return PIFS_ECORRUPT;
  }
  if (si->size == 0 || (uint64_t)si->size > (uint64_t)si->nclus * clus_bytes(v)) return PIFS_ECORRUPT;
  return 0;
}

static uint64_t store_lba(const struct fat32_vol *v, uint32_t first) { return v->part_lba + clus_sector(v, first); }

/* Largest cluster count whose byte size fits in a 32-bit file size. */
static uint32_t max_file_clusters(const struct fat32_vol *v) { return (uint32_t)(0xFFFFFFFFu / clus_bytes(v)); }

int fat32_find_store(struct fat32_vol *v, uint64_t *lba, uint64_t *sectors) {
  struct storeinfo si;
  int r = store_get(v, &si);
  if (r) return r;
  *lba = store_lba(v, si.first);
  *sectors = si.size / PIFS_SECTOR;
  return 0;
}

int fat32_create_store(struct fat32_vol *v, uint64_t want_sectors, uint64_t reserve_sectors, uint64_t *lba,
                       uint64_t *sectors) {
  struct dscan root, pd;
  uint32_t pifs = 0;
  uint32_t excl[2] = {0, 0};
  unsigned nexcl = 0;
  uint32_t new_dir = 0, ext = 0; /* new PIFS cluster, extension of the parent */
  const struct dscan *parent;
  uint32_t spc = v->sec_per_clus;
  int r;

  r = store_lookup(v, &pifs, &root, &pd);
  if (r == 0) return PIFS_EEXIST;
  if (r != PIFS_ENOENT) return r;

  /* Plan the directory clusters: a cluster for PIFS/ if it is new, and one
   * to extend the parent directory if it has no free slot. */
  if (!pifs) {
    if ((r = fat_find_free(v, excl, nexcl, &new_dir)) != 0) return r;
    if (!new_dir) return PIFS_ENOSPC;
    excl[nexcl++] = new_dir;
    parent = &root;
  } else {
    parent = &pd;
  }
  if (!parent->have_slot) {
    if ((r = fat_find_free(v, excl, nexcl, &ext)) != 0) return r;
    if (!ext) return PIFS_ENOSPC;
    excl[nexcl++] = ext;
  }

  /* Pick the run. */
  uint32_t maxc = max_file_clusters(v);
  uint64_t want_c = want_sectors ? (want_sectors + spc - 1) / spc : 0;
  if (want_c > maxc) want_c = maxc;
  struct fscan fs;
  if ((r = fat_scan(v, excl, nexcl, (uint32_t)want_c, &fs)) != 0) return r;
  uint32_t first, n;
  if (want_c) {
    if (!fs.fit_start) return PIFS_ENOSPC;
    first = fs.fit_start;
    n = (uint32_t)want_c;
  } else {
    uint64_t reserve_c = (reserve_sectors + spc - 1) / spc;
    if (reserve_c >= fs.total_free) return PIFS_ENOSPC;
    uint64_t allowed = fs.total_free - reserve_c;
    n = fs.best_len < allowed ? fs.best_len : (uint32_t)allowed;
    if (n > maxc) n = maxc;
    if (n == 0) return PIFS_ENOSPC;
    first = fs.best_start;
  }
  /* Too small for its user: refused before anything is written. */
  if ((uint64_t)n * spc < v->min_store_sectors) return PIFS_ENOSPC;
  uint32_t size = n * clus_bytes(v);

  uint8_t ents[3 * DIR_ENT];
  uint8_t *dot = ents, *dotdot = ents + DIR_ENT, *st = ents + 2 * DIR_ENT;
  uint8_t pifs_ent[DIR_ENT];
  make_ent(v, st, NAME_STORE, ATTR_ARCHIVE, first, size);

  /* 1. New directory clusters (free space; invisible until linked). */
  if (new_dir) {
    static const uint8_t n_dot[11] = {'.', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
    static const uint8_t n_dotdot[11] = {'.', '.', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
    make_ent(v, dot, n_dot, ATTR_DIRECTORY, new_dir, 0);
    make_ent(v, dotdot, n_dotdot, ATTR_DIRECTORY, 0, 0); /* parent is the root */
    make_ent(v, pifs_ent, NAME_PIFS, ATTR_DIRECTORY, new_dir, 0);
    if ((r = write_dir_cluster(v, new_dir, ents, 3)) != 0) return r;
  }
  const uint8_t *to_add = new_dir ? pifs_ent : st;
  if (ext && (r = write_dir_cluster(v, ext, to_add, 1)) != 0) return r;

  /* 2. FAT: the store chain, the new directory, the parent's extension. */
  if ((r = fat_chain(v, first, n, FAT_EOC)) != 0) return r;
  if (new_dir && (r = fat_chain(v, new_dir, 1, FAT_EOC)) != 0) return r;
  if (ext) {
    if ((r = fat_chain(v, ext, 1, FAT_EOC)) != 0) return r;
    if ((r = fat_chain(v, parent->last_clus, 1, ext)) != 0) return r; /* makes it visible */
  }

  /* 3. The directory entry in the existing parent (if not already in ext). */
  if (!ext && (r = write_slot(v, &parent->slot, parent->slot_is_end, to_add)) != 0) return r;

  /* 4. FSInfo, 5. flush. */
  if ((r = fsinfo_update(v, first + n - 1)) != 0) return r;
  if ((r = bd_flush(v)) != 0) return r;

  *lba = store_lba(v, first);
  *sectors = (uint64_t)n * spc;
  return 0;
}

int fat32_grow_store(struct fat32_vol *v, uint64_t want_sectors, uint64_t reserve_sectors, uint64_t *sectors) {
  struct storeinfo si;
  struct fcache fc;
  uint32_t spc = v->sec_per_clus;
  int r = store_get(v, &si);
  if (r) return r;

  uint32_t maxc = max_file_clusters(v);
  uint32_t last = si.first + si.nclus - 1;
  uint32_t cur_c = si.nclus;
  /* Free clusters directly after the chain. */
  uint32_t after = 0;
  fc_init(&fc);
  for (uint32_t c = last + 1; c <= v->nclusters + 1 && cur_c + after < maxc; c++) {
    uint32_t e;
    if ((r = fat_get(v, &fc, c, &e)) != 0) return r;
    if (e) break;
    after++;
  }

  uint32_t new_c;
  if (want_sectors) {
    uint64_t want_c = (want_sectors + spc - 1) / spc;
    if (want_c > maxc) want_c = maxc;
    if (want_c <= cur_c) {
      new_c = cur_c; /* never shrinks */
    } else {
      if (want_c - cur_c > after) return PIFS_ENOSPC;
      new_c = (uint32_t)want_c;
    }
  } else {
    uint32_t nfree;
    uint64_t reserve_c = (reserve_sectors + spc - 1) / spc;
    if ((r = fat32_count_free(v, &nfree)) != 0) return r;
    uint64_t allowed = nfree > reserve_c ? nfree - reserve_c : 0;
    new_c = cur_c + (uint32_t)(after < allowed ? after : allowed);
  }

  uint32_t new_size = new_c * clus_bytes(v);
  if (new_c == cur_c && new_size <= si.size) {
    *sectors = si.size / PIFS_SECTOR;
    return 0;
  }

  /* FAT: new clusters first (chain ending in EOC), then link the old end. */
  if (new_c > cur_c) {
    if ((r = fat_chain(v, last + 1, new_c - cur_c, FAT_EOC)) != 0) return r;
    if ((r = fat_chain(v, last, 1, last + 1)) != 0) return r;
  }
  /* Directory entry size. */
  {
    uint8_t b[PIFS_SECTOR];
    uint16_t d = v->now_date ? v->now_date : DEFAULT_DATE;
    uint16_t t = v->now_date ? v->now_time : DEFAULT_TIME;
    if ((r = vrd(v, dpos_lba(v, &si.pos), 1, b)) != 0) return r;
    uint8_t *e = b + si.pos.idx * DIR_ENT;
    if (memcmp(e, si.ent, DIR_ENT) != 0) return PIFS_ECORRUPT;
    st32(e + DIR_FILESIZE, new_size);
    st16(e + DIR_WRTDATE, d);
    st16(e + DIR_WRTTIME, t);
    st16(e + DIR_LSTACCDATE, d);
    if ((r = vwr(v, dpos_lba(v, &si.pos), 1, b)) != 0) return r;
  }
  if (new_c > cur_c && (r = fsinfo_update(v, si.first + new_c - 1)) != 0) return r;
  if ((r = bd_flush(v)) != 0) return r;
  *sectors = new_size / PIFS_SECTOR;
  return 0;
}

/* ---- generic reads ---------------------------------------------------- */

/* Finds the file at an 8.3 path; its directory entry lands in ds->ent. */
static int find_file(struct fat32_vol *v, const char *path, struct dscan *ds) {
  uint8_t name[11];
  uint32_t dir = v->root_clus;
  const char *p = path;
  int r, have = 0;

  for (;;) {
    while (*p == '/') p++;
    if (!*p) break;
    const char *q = p;
    while (*q && *q != '/') q++;
    if (have) { /* the previous component must be a directory */
      if (!(ds->ent[DIR_ATTR] & ATTR_DIRECTORY)) return PIFS_ENOTDIR;
      dir = ent_clus(ds->ent);
      if (dir == 0) dir = v->root_clus; /* ".." to the root */
    }
    if ((r = to_83(p, (size_t)(q - p), name)) != 0) return r;
    if ((r = dir_scan(v, dir, name, ds)) != 0) return r;
    if (!ds->found) return PIFS_ENOENT;
    have = 1;
    p = q;
  }
  if (!have) return PIFS_EINVAL;
  if (ds->ent[DIR_ATTR] & ATTR_DIRECTORY) return PIFS_EINVAL;
  return 0;
}

/* Reads or overwrites the first `size` bytes of a file along its cluster
 * chain. A write of a partial last sector keeps that sector's other bytes. */
static int file_rw(struct fat32_vol *v, const struct dscan *ds, uint8_t *out, uint32_t size,
                   int write) {
  uint8_t sb[PIFS_SECTOR];
  struct fcache fc;
  uint32_t clus = ent_clus(ds->ent), done = 0, seen = 0;
  int r;
  fc_init(&fc);
  while (done < size) {
    if (!clus_valid(v, clus) || ++seen > v->nclusters) return PIFS_ECORRUPT;
    for (uint32_t s = 0; s < v->sec_per_clus && done < size; s++) {
      uint32_t lba = clus_sector(v, clus) + s;
      uint32_t left = size - done;
      if (left >= PIFS_SECTOR) {
        /* Whole sectors straight from or into the caller's buffer, several at once. */
        uint32_t n = left / PIFS_SECTOR;
        if (n > v->sec_per_clus - s) n = v->sec_per_clus - s;
        r = write ? vwr(v, lba, n, out + done) : vrd(v, lba, n, out + done);
        if (r) return r;
        done += n * PIFS_SECTOR;
        s += n - 1;
      } else {
        if ((r = vrd(v, lba, 1, sb)) != 0) return r;
        if (write) {
          memcpy(sb, out + done, left);
          if ((r = vwr(v, lba, 1, sb)) != 0) return r;
        } else {
          memcpy(out + done, sb, left);
        }
        done += left;
      }
    }
    if (done < size) {
      if ((r = fat_next(v, &fc, clus, &clus)) != 0) return r;
      if (clus == 0) return PIFS_ECORRUPT; /* chain shorter than the size */
    }
  }
  return 0;
}

int fat32_read_file(struct fat32_vol *v, const char *path, void *buf, uint32_t max, uint32_t *len) {
  struct dscan ds;
  int r;
  *len = 0;
  if ((r = find_file(v, path, &ds)) != 0) return r;
  uint32_t size = ld32(ds.ent + DIR_FILESIZE);
  *len = size;
  if (size > max) return PIFS_ERANGE;
  return file_rw(v, &ds, buf, size, 0);
}

int fat32_overwrite_file(struct fat32_vol *v, const char *path, const void *data, uint32_t len) {
  struct dscan ds;
  int r;
  if ((r = find_file(v, path, &ds)) != 0) return r;
  if (len > ld32(ds.ent + DIR_FILESIZE)) return PIFS_ENOSPC;
  if ((r = file_rw(v, &ds, (uint8_t *)(uintptr_t)data, len, 1)) != 0) return r;
  return v->bd->flush ? v->bd->flush(v->bd->ctx) : 0;
}
