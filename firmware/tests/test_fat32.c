/* Tests for core/fat32.c against images made by dosfstools and mtools:
 * mount and refusals (with no write at all), STORE.DAT create/find/grow
 * checked with fsck.fat, mdir and mtype, generic file reads, and the
 * directory-full cases. Needs mkfs.fat, fsck.fat and mtools on PATH. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "fat32.h"

/* ---- environment ------------------------------------------------------ */

static char tmp[256];   /* scratch directory (mkdtemp) */
static char base[300];  /* superfloppy base image with a few files */
static char srcdir[300];/* source files copied onto the images */

#define RANDOM_LEN 20603u /* multi-cluster, not sector aligned */
static uint8_t random_src[RANDOM_LEN];
static const char config_src[] = "node_id=7\ncluster=demo\n";

/* Runs a shell command (formatted); returns its exit status, -1 on failure. */
static int sh(const char *fmt, ...) {
  char cmd[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof cmd, fmt, ap);
  va_end(ap);
  int st = system(cmd);
  if (st == -1 || !WIFEXITED(st)) return -1;
  return WEXITSTATUS(st);
}

/* Runs a command and captures stdout+stderr into out; returns exit status. */
static int capture(char *out, size_t cap, const char *fmt, ...) {
  char cmd[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof cmd, fmt, ap);
  va_end(ap);
  strncat(cmd, " 2>&1", sizeof cmd - strlen(cmd) - 1);
  FILE *p = popen(cmd, "r");
  if (!p) return -1;
  size_t n = fread(out, 1, cap - 1, p);
  out[n] = 0;
  int st = pclose(p);
  if (st == -1 || !WIFEXITED(st)) return -1;
  return WEXITSTATUS(st);
}

static void path(char *out, size_t cap, const char *name) { snprintf(out, cap, "%s/%s", tmp, name); }

static int write_file(const char *p, const void *data, size_t n) {
  FILE *f = fopen(p, "wb");
  if (!f) return -1;
  size_t w = fwrite(data, 1, n, f);
  return (fclose(f) == 0 && w == n) ? 0 : -1;
}

/* A file of size bytes, all set to fill (so untouched data is recognisable). */
static int fill_file(const char *p, uint64_t size, uint8_t fill) {
  static uint8_t b[1 << 16];
  memset(b, fill, sizeof b);
  FILE *f = fopen(p, "wb");
  if (!f) return -1;
  for (uint64_t done = 0; done < size;) {
    size_t n = size - done < sizeof b ? (size_t)(size - done) : sizeof b;
    if (fwrite(b, 1, n, f) != n) {
      fclose(f);
      return -1;
    }
    done += n;
  }
  return fclose(f);
}

static int pread_at(const char *p, uint64_t off, void *buf, size_t n) {
  int fd = open(p, O_RDONLY);
  if (fd < 0) return -1;
  ssize_t r = pread(fd, buf, n, (off_t)off);
  close(fd);
  return r == (ssize_t)n ? 0 : -1;
}

static int pwrite_at(const char *p, uint64_t off, const void *buf, size_t n) {
  int fd = open(p, O_WRONLY);
  if (fd < 0) return -1;
  ssize_t r = pwrite(fd, buf, n, (off_t)off);
  close(fd);
  return r == (ssize_t)n ? 0 : -1;
}

/* Writes an MBR with one partition (type, start, size) into sector 0. */
static int write_mbr(const char *p, uint8_t type, uint32_t start, uint32_t size) {
  uint8_t s[512];
  memset(s, 0, sizeof s);
  uint8_t *pe = s + 446;
  pe[0] = 0x00;
  pe[1] = 0xFE; pe[2] = 0xFF; pe[3] = 0xFF; /* CHS: use LBA */
  pe[4] = type;
  pe[5] = 0xFE; pe[6] = 0xFF; pe[7] = 0xFF;
  st32(pe + 8, start);
  st32(pe + 12, size);
  s[510] = 0x55;
  s[511] = 0xAA;
  return pwrite_at(p, 0, s, sizeof s);
}

/* ---- block device over an image file, counting writes ----------------- */

struct fdev {
  int fd;
  unsigned reads, writes, flushes;
  struct pifs_bdev bd;
};

static int f_read(void *ctx, uint64_t lba, uint32_t n, void *buf) {
  struct fdev *d = ctx;
  d->reads++;
  ssize_t r = pread(d->fd, buf, (size_t)n * 512, (off_t)(lba * 512));
  return r == (ssize_t)((size_t)n * 512) ? 0 : PIFS_EIO;
}

static int f_write(void *ctx, uint64_t lba, uint32_t n, const void *buf) {
  struct fdev *d = ctx;
  d->writes++;
  ssize_t r = pwrite(d->fd, buf, (size_t)n * 512, (off_t)(lba * 512));
  return r == (ssize_t)((size_t)n * 512) ? 0 : PIFS_EIO;
}

static int f_flush(void *ctx) {
  struct fdev *d = ctx;
  d->flushes++;
  return fsync(d->fd) ? PIFS_EIO : 0;
}

static int dev_open(struct fdev *d, const char *p) {
  struct stat st;
  memset(d, 0, sizeof *d);
  d->fd = open(p, O_RDWR);
  if (d->fd < 0 || fstat(d->fd, &st)) return -1;
  d->bd.ctx = d;
  d->bd.sectors = (uint64_t)st.st_size / 512;
  d->bd.read = f_read;
  d->bd.write = f_write;
  d->bd.flush = f_flush;
  return 0;
}

static void dev_close(struct fdev *d) {
  if (d->fd >= 0) close(d->fd);
  d->fd = -1;
}

/* ---- checks through dosfstools / mtools ------------------------------- */

/* fsck.fat -n must exit 0 and print nothing but its banner and the summary
 * line ("IMG: N files, U/T clusters"). *total gets T when not NULL. */
static int fsck_clean(const char *img, uint32_t *total) {
  static char out[16384];
  int st = capture(out, sizeof out, "fsck.fat -n '%s'", img);
  int ok = st == 0;
  char *save = NULL;
  int lines = 0;
  for (char *l = strtok_r(out, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
    lines++;
    if (strncmp(l, "fsck.fat ", 9) == 0) continue;
    const char *c = strstr(l, " files, ");
    if (c && strstr(l, " clusters")) {
      const char *sl = strchr(c, '/');
      if (total && sl) *total = (uint32_t)strtoul(sl + 1, NULL, 10);
      continue;
    }
    fprintf(stderr, "  fsck.fat: %s\n", l);
    ok = 0;
  }
  if (!ok) fprintf(stderr, "  fsck.fat exit status %d on %s\n", st, img);
  return ok && lines == 2;
}

/* Size of NAME.EXT as listed by mdir (dir like "::PIFS"), -1 if absent.
 * date gets the listed date ("2026-01-01") when not NULL. */
static long long mdir_size(const char *img, const char *dir, const char *name83, char *date) {
  static char out[16384];
  if (capture(out, sizeof out, "mdir -i '%s' %s", img, dir) != 0) return -1;
  char *save = NULL;
  for (char *l = strtok_r(out, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
    if (strncmp(l, name83, 12) != 0) continue;
    char *end;
    long long n = strtoll(l + 12, &end, 10);
    if (date) {
      while (*end == ' ') end++;
      snprintf(date, 11, "%s", end);
    }
    return n;
  }
  return -1;
}

/* mtype of a file equals data byte for byte. */
static int mtype_equals(const char *img, const char *file, const void *data, size_t n) {
  char out_path[400];
  static uint8_t buf[1 << 16];
  path(out_path, sizeof out_path, "mtype.out");
  if (sh("mtype -i '%s' '%s' > '%s' 2>/dev/null", img, file, out_path) != 0) return 0;
  FILE *f = fopen(out_path, "rb");
  if (!f) return 0;
  size_t got = fread(buf, 1, sizeof buf, f);
  fclose(f);
  return got == n && memcmp(buf, data, n) == 0;
}

/* ---- fixtures --------------------------------------------------------- */

/* Copies the base image to a fresh file name. */
static int from_base(char *out, size_t cap, const char *name) {
  path(out, cap, name);
  return sh("cp '%s' '%s'", base, out);
}

static int make_base(void) {
  char p[400];
  snprintf(srcdir, sizeof srcdir, "%s/src", tmp);
  if (mkdir(srcdir, 0700)) return -1;
  uint32_t x = 0x12345678u;
  for (uint32_t i = 0; i < RANDOM_LEN; i++) {
    x ^= x << 13; x ^= x >> 17; x ^= x << 5;
    random_src[i] = (uint8_t)x;
  }
  snprintf(p, sizeof p, "%s/RANDOM.BIN", srcdir);
  if (write_file(p, random_src, RANDOM_LEN)) return -1;
  snprintf(p, sizeof p, "%s/CONFIG.TXT", srcdir);
  if (write_file(p, config_src, strlen(config_src))) return -1;
  snprintf(p, sizeof p, "%s/long file name.txt", srcdir);
  if (write_file(p, "long\n", 5)) return -1;

  path(base, sizeof base, "base.img");
  /* Filled with 0xA5 so that untouched free clusters are recognisable. */
  if (fill_file(base, 64u << 20, 0xA5)) return -1;
  if (sh("mkfs.fat -F 32 -s 1 '%s' >/dev/null", base)) return -1;
  if (sh("cd '%s' && mcopy -i '%s' CONFIG.TXT 'long file name.txt' :: && mmd -i '%s' ::BOOT && "
         "mcopy -i '%s' RANDOM.BIN CONFIG.TXT ::BOOT",
         srcdir, base, base, base))
    return -1;
  return 0;
}

/* A FAT32 volume inside an MBR partition (type 0x0C at 2048). */
static int make_mbr_image(const char *img) {
  if (fill_file(img, (64u << 20) + (2048u * 512), 0xA5)) return -1;
  if (write_mbr(img, 0x0C, 2048, 131072)) return -1;
  /* The block count is in KiB: 65536 = the 131072-sector partition. */
  if (sh("mkfs.fat -F 32 -s 1 --offset 2048 '%s' 65536 >/dev/null", img)) return -1;
  return sh("cd '%s' && mcopy -i '%s@@1M' CONFIG.TXT :: && mmd -i '%s@@1M' ::BOOT", srcdir, img, img);
}

/* Reads FAT #1 of a superfloppy image (entries 0 .. n-1). */
static int read_fat(const char *img, const struct fat32_vol *v, uint32_t *fat, uint32_t n) {
  uint8_t *b = malloc((size_t)n * 4);
  if (!b) return -1;
  int r = pread_at(img, (v->part_lba + v->reserved) * 512, b, (size_t)n * 4);
  for (uint32_t i = 0; r == 0 && i < n; i++) fat[i] = ld32(b + 4 * i);
  free(b);
  return r;
}

/* Points the FSInfo next-free hint of a superfloppy image at cluster 2. */
static int reset_hint(const char *img) {
  uint8_t b[4];
  st32(b, 2);
  return pwrite_at(img, 512 + 492, b, 4);
}

static uint64_t data_lba(const struct fat32_vol *v) { return v->part_lba + v->data_start; }

static int refused(const char *img, int err, const char *reason_part);

/* ---- 1. mount --------------------------------------------------------- */

static void test_mount_superfloppy(void) {
  char img[400];
  struct fdev d;
  struct fat32_vol v;
  uint32_t fsck_total = 0;
  CHECK(from_base(img, sizeof img, "sf.img") == 0);
  CHECK(fsck_clean(img, &fsck_total));
  CHECK(dev_open(&d, img) == 0);
  memset(&v, 0, sizeof v);
  CHECK_EQ(fat32_mount(&v, &d.bd), 0);
  CHECK_EQ(v.superfloppy, 1);
  CHECK_EQ(v.part_lba, 0);
  CHECK_EQ(v.total_sectors, 131072);
  CHECK_EQ(v.sec_per_clus, 1);
  CHECK_EQ(v.nfats, 2);
  CHECK_EQ(v.root_clus, 2);
  CHECK_EQ(v.fsinfo_sec, 1);
  CHECK_EQ(v.data_start, v.reserved + 2 * v.fat_sz);
  CHECK_EQ(v.nclusters, fsck_total);
  CHECK((uint64_t)v.nclusters * v.sec_per_clus + v.data_start <= v.total_sectors);
  CHECK((uint64_t)(v.nclusters + 2) * 4 <= (uint64_t)v.fat_sz * 512);
  uint32_t nfree = 0;
  CHECK_EQ(fat32_count_free(&v, &nfree), 0);
  CHECK(nfree > 120000 && nfree < v.nclusters);
  CHECK_EQ(d.writes, 0);
  dev_close(&d);
}

static void test_mount_mbr(void) {
  char img[400], part[400];
  struct fdev d;
  struct fat32_vol v;
  uint32_t fsck_total = 0;
  path(img, sizeof img, "mbr.img");
  path(part, sizeof part, "mbr.part");
  CHECK(make_mbr_image(img) == 0);
  CHECK(sh("dd if='%s' of='%s' bs=512 skip=2048 status=none", img, part) == 0);
  CHECK(fsck_clean(part, &fsck_total));
  CHECK(dev_open(&d, img) == 0);
  memset(&v, 0, sizeof v);
  CHECK_EQ(fat32_mount(&v, &d.bd), 0);
  CHECK_EQ(v.superfloppy, 0);
  CHECK_EQ(v.part_lba, 2048);
  CHECK(v.total_sectors <= 131072 && v.total_sectors >= 65536);
  CHECK_EQ(v.nclusters, fsck_total);
  CHECK_EQ(v.sec_per_clus, 1);
  CHECK_EQ(v.data_start, v.reserved + v.nfats * v.fat_sz);
  CHECK_EQ(d.writes, 0);
  dev_close(&d);

  /* The first FAT32 partition wins, whatever comes before it. */
  uint8_t pe[16];
  memset(pe, 0, sizeof pe);
  pe[4] = 0x0C;
  st32(pe + 8, 2048);
  st32(pe + 12, 131072);
  CHECK(write_mbr(img, 0x83, 1, 2047) == 0);
  CHECK(pwrite_at(img, 446 + 16, pe, 16) == 0);
  CHECK(dev_open(&d, img) == 0);
  CHECK_EQ(fat32_mount(&v, &d.bd), 0);
  CHECK_EQ(v.part_lba, 2048);
  CHECK_EQ(v.nclusters, fsck_total);
  CHECK_EQ(d.writes, 0);
  dev_close(&d);

  /* A FAT32 partition whose boot sector is blank. */
  uint8_t z[512];
  memset(z, 0, sizeof z);
  CHECK(pwrite_at(img, 2048 * 512, z, 512) == 0);
  CHECK(refused(img, PIFS_EBADSIG, "partition 2"));
}

/* ---- 2. refusals ------------------------------------------------------ */

/* Mounts img and expects err, with not a single write. */
static int refused(const char *img, int err, const char *reason_part) {
  struct fdev d;
  struct fat32_vol v;
  if (dev_open(&d, img)) return 0;
  memset(&v, 0, sizeof v);
  int r = fat32_mount(&v, &d.bd);
  dev_close(&d);
  if (r != err || d.writes != 0) {
    fprintf(stderr, "  %s: mount gave %d (expected %d), %u writes, reason: %s\n", img, r, err, d.writes,
            fat32_reason());
    return 0;
  }
  if (reason_part && !strstr(fat32_reason(), reason_part)) {
    fprintf(stderr, "  %s: reason \"%s\" lacks \"%s\"\n", img, fat32_reason(), reason_part);
    return 0;
  }
  return 1;
}

static void test_refuse_fat16(void) {
  char img[400];
  path(img, sizeof img, "f16.img");
  CHECK(sh("rm -f '%s' && truncate -s 64M '%s' && mkfs.fat -F 16 '%s' >/dev/null", img, img, img) == 0);
  CHECK(refused(img, PIFS_EFAT1216, "FAT16"));
}

static void test_refuse_fat12(void) {
  char img[400];
  path(img, sizeof img, "f12.img");
  CHECK(sh("rm -f '%s' && truncate -s 4M '%s' && mkfs.fat -F 12 '%s' >/dev/null", img, img, img) == 0);
  CHECK(refused(img, PIFS_EFAT1216, "FAT12"));
}

static void test_refuse_zeroed(void) {
  char img[400];
  path(img, sizeof img, "zero.img");
  CHECK(fill_file(img, 1u << 20, 0) == 0);
  CHECK(refused(img, PIFS_EBADSIG, "0x55AA"));
}

static void test_refuse_4096_sectors(void) {
  char img[400];
  path(img, sizeof img, "s4096.img");
  CHECK(sh("rm -f '%s' && truncate -s 64M '%s' && mkfs.fat -F 32 -S 4096 '%s' >/dev/null 2>&1", img, img, img) == 0);
  CHECK(refused(img, PIFS_ESECTOR, "bytes per sector is 4096, not 512"));

  /* The same by patching a 512-byte volume. */
  uint8_t b[2];
  CHECK(from_base(img, sizeof img, "s1024.img") == 0);
  st16(b, 1024);
  CHECK(pwrite_at(img, 11, b, 2) == 0);
  CHECK(refused(img, PIFS_ESECTOR, "bytes per sector is 1024, not 512"));
}

static void test_refuse_exfat(void) {
  char img[400];
  CHECK(from_base(img, sizeof img, "exfat.img") == 0);
  CHECK(pwrite_at(img, 3, "EXFAT   ", 8) == 0);
  CHECK(refused(img, PIFS_EEXFAT, "exFAT"));

  /* exFAT in an MBR partition of type 0x07. */
  uint8_t s[512];
  path(img, sizeof img, "exfat_mbr.img");
  CHECK(fill_file(img, 4u << 20, 0) == 0);
  CHECK(write_mbr(img, 0x07, 2048, 4096) == 0);
  memset(s, 0, sizeof s);
  s[0] = 0xEB; s[1] = 0x76; s[2] = 0x90;
  memcpy(s + 3, "EXFAT   ", 8);
  s[510] = 0x55; s[511] = 0xAA;
  CHECK(pwrite_at(img, 2048 * 512, s, sizeof s) == 0);
  CHECK(refused(img, PIFS_EEXFAT, "partition 1 is exFAT (type 0x07)"));
}

static void test_refuse_mbr_linux(void) {
  char img[400];
  path(img, sizeof img, "linux.img");
  CHECK(fill_file(img, 4u << 20, 0) == 0);
  CHECK(write_mbr(img, 0x83, 2048, 6144) == 0);
  CHECK(refused(img, PIFS_ENOTFAT32, "type 0x83"));

  /* An MBR with no partition at all. */
  CHECK(write_mbr(img, 0x00, 0, 0) == 0);
  CHECK(refused(img, PIFS_ENOTFAT32, "no partitions"));
}

static void test_refuse_mbr_fat16(void) {
  char img[400];
  path(img, sizeof img, "mbr16.img");
  CHECK(fill_file(img, (64u << 20) + (2048u * 512), 0) == 0);
  CHECK(write_mbr(img, 0x06, 2048, 131072) == 0);
  CHECK(sh("mkfs.fat -F 16 --offset 2048 '%s' 65536 >/dev/null 2>&1", img) == 0);
  CHECK(refused(img, PIFS_EFAT1216, "partition 1 is FAT16 (type 0x06)"));
  /* A FAT32 partition type whose volume is really FAT16. */
  CHECK(write_mbr(img, 0x0C, 2048, 131072) == 0);
  CHECK(refused(img, PIFS_EFAT1216, "FAT16"));
}

static void test_refuse_bad_bpb(void) {
  char img[400];
  uint8_t b[4];

  CHECK(from_base(img, sizeof img, "fatsz0.img") == 0);
  st32(b, 0);
  CHECK(pwrite_at(img, 36, b, 4) == 0);
  CHECK(refused(img, PIFS_EBPB, "BPB: FAT size is 0"));

  /* Total sectors larger than the device. */
  CHECK(from_base(img, sizeof img, "short.img") == 0);
  CHECK(truncate(img, 32u << 20) == 0);
  CHECK(refused(img, PIFS_EBPB, "device"));

  /* Root cluster out of range. */
  CHECK(from_base(img, sizeof img, "rootclus.img") == 0);
  st32(b, 0x00FFFFFF);
  CHECK(pwrite_at(img, 44, b, 4) == 0);
  CHECK(refused(img, PIFS_EBPB, "root cluster"));

  /* No reserved sectors. */
  CHECK(from_base(img, sizeof img, "rsvd0.img") == 0);
  st16(b, 0);
  CHECK(pwrite_at(img, 14, b, 2) == 0);
  CHECK(refused(img, PIFS_EBPB, "reserved"));

  /* Volume larger than its partition. */
  path(img, sizeof img, "mbrsmall.img");
  CHECK(make_mbr_image(img) == 0);
  CHECK(write_mbr(img, 0x0C, 2048, 60000) == 0);
  CHECK(refused(img, PIFS_EBPB, "partition"));
}

/* ---- 3. create / find ------------------------------------------------- */

/* Checks that an image still has the pre-existing files, byte for byte. */
static int files_intact(const char *img) {
  return mtype_equals(img, "::CONFIG.TXT", config_src, strlen(config_src)) &&
         mtype_equals(img, "::BOOT/CONFIG.TXT", config_src, strlen(config_src)) &&
         mtype_equals(img, "::BOOT/RANDOM.BIN", random_src, RANDOM_LEN) &&
         mtype_equals(img, "::long file name.txt", "long\n", 5);
}

static void test_create_fixed(void) {
  char img[400];
  struct fdev d;
  struct fat32_vol v;
  uint64_t lba = 0, n = 0, lba2 = 0, n2 = 0;
  uint32_t free0 = 0, free1 = 0;
  CHECK(from_base(img, sizeof img, "create.img") == 0);
  CHECK(dev_open(&d, img) == 0);
  memset(&v, 0, sizeof v);
  CHECK_EQ(fat32_mount(&v, &d.bd), 0);
  CHECK_EQ(fat32_find_store(&v, &lba, &n), PIFS_ENOENT);
  CHECK_EQ(fat32_count_free(&v, &free0), 0);
  CHECK_EQ(d.writes, 0);

  uint32_t nent = v.nclusters + 2;
  uint32_t *fat0 = malloc((size_t)nent * 4);
  CHECK(fat0 != NULL);
  CHECK(read_fat(img, &v, fat0, nent) == 0);

  CHECK_EQ(fat32_create_store(&v, 2000, 0, &lba, &n), 0); /* rounds to clusters: spc 1 */
  CHECK_EQ(n, 2000);
  CHECK(d.flushes >= 1);
  CHECK_EQ(fat32_count_free(&v, &free1), 0);
  CHECK_EQ(free1, free0 - 2000 - 1); /* the store and the new PIFS cluster */

  /* The run lies in the data region, over clusters that were all free. */
  CHECK(lba >= data_lba(&v));
  CHECK(lba + n <= v.part_lba + v.total_sectors);
  uint32_t first = (uint32_t)((lba - data_lba(&v)) / v.sec_per_clus) + 2;
  for (uint32_t c = first; c < first + 2000; c++) CHECK_EQ(fat0[c] & 0x0FFFFFFF, 0);
  free(fat0);

  /* FSInfo holds the true free count. */
  uint8_t fsi[512];
  CHECK(pread_at(img, 512, fsi, 512) == 0);
  CHECK_EQ(ld32(fsi + 488), free1);
  CHECK_EQ(ld32(fsi + 492), first + 2000 - 1); /* last allocated, as Linux/mtools do */

  /* Store data was not touched (still the 0xA5 fill). */
  static uint8_t data[2000 * 512];
  CHECK(pread_at(img, lba * 512, data, sizeof data) == 0);
  for (size_t i = 0; i < sizeof data; i++) CHECK_EQ(data[i], 0xA5);

  CHECK_EQ(fat32_find_store(&v, &lba2, &n2), 0);
  CHECK_EQ(lba2, lba);
  CHECK_EQ(n2, n);
  CHECK_EQ(fat32_create_store(&v, 100, 0, &lba2, &n2), PIFS_EEXIST);
  dev_close(&d);

  /* A fresh mount finds the same. */
  CHECK(dev_open(&d, img) == 0);
  CHECK_EQ(fat32_mount(&v, &d.bd), 0);
  CHECK_EQ(fat32_find_store(&v, &lba2, &n2), 0);
  CHECK_EQ(lba2, lba);
  CHECK_EQ(n2, n);
  CHECK_EQ(d.writes, 0);
  dev_close(&d);

  char date[16] = "";
  CHECK(fsck_clean(img, NULL));
  CHECK_EQ(mdir_size(img, "::PIFS", "STORE    DAT", date), 2000 * 512);
  CHECK(strcmp(date, "2026-01-01") == 0);
  CHECK(files_intact(img));
}

static void test_create_largest(void) {
  char img[400];
  struct fdev d;
  struct fat32_vol v;
  uint64_t lba = 0, n = 0, lba2 = 0, n2 = 0;
  uint32_t free0 = 0, free1 = 0;
  CHECK(from_base(img, sizeof img, "largest.img") == 0);
  CHECK(dev_open(&d, img) == 0);
  memset(&v, 0, sizeof v);
  CHECK_EQ(fat32_mount(&v, &d.bd), 0);
  v.now_date = (uint16_t)(((2031 - 1980) << 9) | (7 << 5) | 14); /* 2031-07-14 */
  v.now_time = (uint16_t)((13 << 11) | (45 << 5));
  CHECK_EQ(fat32_count_free(&v, &free0), 0);
  CHECK_EQ(fat32_create_store(&v, 0, 4096, &lba, &n), 0);
  CHECK_EQ(fat32_count_free(&v, &free1), 0);
  CHECK_EQ(free1, 4096); /* exactly the reserve is left (1 sector clusters) */
  CHECK_EQ(n, free0 - 1 - 4096);
  CHECK(lba >= data_lba(&v) && lba + n <= v.part_lba + v.total_sectors);
  CHECK_EQ(fat32_find_store(&v, &lba2, &n2), 0);
  CHECK_EQ(lba2, lba);
  CHECK_EQ(n2, n);
  CHECK_EQ(fat32_create_store(&v, 0, 0, &lba2, &n2), PIFS_EEXIST);
  dev_close(&d);
  char date[16] = "";
  CHECK(fsck_clean(img, NULL));
  CHECK_EQ(mdir_size(img, "::PIFS", "STORE    DAT", date), (long long)n * 512);
  CHECK(strcmp(date, "2031-07-14") == 0);
  CHECK(files_intact(img));

  /* Too large a reserve, too large a fixed size. */
  CHECK(from_base(img, sizeof img, "nospc.img") == 0);
  CHECK(dev_open(&d, img) == 0);
  CHECK_EQ(fat32_mount(&v, &d.bd), 0);
  CHECK_EQ(fat32_create_store(&v, 0, 200000, &lba, &n), PIFS_ENOSPC);
  CHECK_EQ(fat32_create_store(&v, 200000, 0, &lba, &n), PIFS_ENOSPC);
  CHECK_EQ(d.writes, 0);
  dev_close(&d);
}

static void test_create_mbr(void) {
  char img[400], part[400], dir[500];
  struct fdev d;
  struct fat32_vol v;
  uint64_t lba = 0, n = 0, lba2 = 0, n2 = 0;
  path(img, sizeof img, "mbrc.img");
  path(part, sizeof part, "mbrc.part");
  CHECK(make_mbr_image(img) == 0);
  CHECK(dev_open(&d, img) == 0);
  memset(&v, 0, sizeof v);
  CHECK_EQ(fat32_mount(&v, &d.bd), 0);
  CHECK_EQ(fat32_create_store(&v, 4096, 0, &lba, &n), 0);
  CHECK_EQ(n, 4096);
  CHECK(lba >= 2048 + v.data_start && lba + n <= 2048 + v.total_sectors);
  CHECK_EQ(fat32_find_store(&v, &lba2, &n2), 0);
  CHECK_EQ(lba2, lba);
  CHECK_EQ(n2, n);
  dev_close(&d);
  CHECK(sh("dd if='%s' of='%s' bs=512 skip=2048 status=none", img, part) == 0);
  CHECK(fsck_clean(part, NULL));
  snprintf(dir, sizeof dir, "::PIFS");
  CHECK_EQ(mdir_size(part, dir, "STORE    DAT", NULL), 4096 * 512);
  CHECK(mtype_equals(part, "::CONFIG.TXT", config_src, strlen(config_src)));
  /* The MBR itself is unchanged. */
  uint8_t s[512];
  CHECK(pread_at(img, 0, s, 512) == 0);
  CHECK_EQ(s[446 + 4], 0x0C);
  CHECK_EQ(ld32(s + 446 + 8), 2048);
}

/* FAT entries keep their top 4 bits; every FAT copy gets the chain. */
static void test_fat_top_bits(void) {
  char img[400];
  struct fdev d;
  struct fat32_vol v;
  uint64_t lba = 0, n = 0;
  uint8_t b[4];
  CHECK(from_base(img, sizeof img, "topbits.img") == 0);
  CHECK(dev_open(&d, img) == 0);
  memset(&v, 0, sizeof v);
  CHECK_EQ(fat32_mount(&v, &d.bd), 0);
  /* First free cluster; the store will start right after the PIFS cluster. */
  uint32_t nent = v.nclusters + 2, f = 0;
  uint32_t *fat = malloc((size_t)nent * 4);
  CHECK(fat != NULL);
  CHECK(read_fat(img, &v, fat, nent) == 0);
  for (uint32_t c = 2; c < nent && !f; c++)
    if ((fat[c] & 0x0FFFFFFF) == 0) f = c;
  free(fat);
  CHECK(f != 0);
  uint32_t mark = f + 10;
  for (uint32_t k = 0; k < v.nfats; k++) {
    st32(b, 0x30000000u);
    CHECK(pwrite_at(img, (uint64_t)(v.reserved + k * v.fat_sz) * 512 + mark * 4, b, 4) == 0);
  }
  CHECK_EQ(fat32_create_store(&v, 64, 0, &lba, &n), 0);
  CHECK_EQ(lba, data_lba(&v) + (uint64_t)(f + 1 - 2) * v.sec_per_clus);
  for (uint32_t k = 0; k < v.nfats; k++) {
    uint64_t fo = (uint64_t)(v.reserved + k * v.fat_sz) * 512;
    CHECK(pread_at(img, fo + mark * 4, b, 4) == 0);
    CHECK_EQ(ld32(b), 0x30000000u | (mark + 1));
    CHECK(pread_at(img, fo + f * 4, b, 4) == 0); /* the PIFS directory */
    CHECK_EQ(ld32(b) & 0x0FFFFFFF, 0x0FFFFFFF);
    CHECK(pread_at(img, fo + (f + 64) * 4, b, 4) == 0); /* last store cluster */
    CHECK_EQ(ld32(b) & 0x0FFFFFFF, 0x0FFFFFFF);
  }
  dev_close(&d);
}

/* A 4 GiB-plus volume: the store is capped at 4 GiB - one cluster. */
static void test_create_4g_cap(void) {
  char img[400];
  struct fdev d;
  struct fat32_vol v;
  uint64_t lba = 0, n = 0;
  path(img, sizeof img, "big.img");
  CHECK(sh("rm -f '%s' && truncate -s 5G '%s' && mkfs.fat -F 32 -s 8 '%s' >/dev/null", img, img, img) == 0);
  CHECK(dev_open(&d, img) == 0);
  memset(&v, 0, sizeof v);
  CHECK_EQ(fat32_mount(&v, &d.bd), 0);
  CHECK_EQ(fat32_create_store(&v, 0, 0, &lba, &n), 0);
  CHECK_EQ(n * 512, 0x100000000ull - 4096);
  dev_close(&d);
  CHECK(fsck_clean(img, NULL));
  CHECK_EQ(mdir_size(img, "::PIFS", "STORE    DAT", NULL), 0x100000000ll - 4096);
  CHECK(unlink(img) == 0);
}

/* ---- 4. grow ---------------------------------------------------------- */

static void test_grow(void) {
  char img[400];
  struct fdev d;
  struct fat32_vol v;
  uint64_t lba = 0, n = 0, lba2 = 0, n2 = 0;
  uint32_t free0 = 0, free1 = 0;
  CHECK(from_base(img, sizeof img, "grow.img") == 0);
  CHECK(dev_open(&d, img) == 0);
  memset(&v, 0, sizeof v);
  CHECK_EQ(fat32_mount(&v, &d.bd), 0);
  CHECK_EQ(fat32_grow_store(&v, 100, 0, &n), PIFS_ENOENT);
  CHECK_EQ(fat32_create_store(&v, 1024, 0, &lba, &n), 0);
  CHECK_EQ(fat32_count_free(&v, &free0), 0);
  CHECK_EQ(fat32_grow_store(&v, 3072, 0, &n), 0);
  CHECK_EQ(n, 3072);
  CHECK_EQ(fat32_count_free(&v, &free1), 0);
  CHECK_EQ(free1, free0 - 2048);
  CHECK_EQ(fat32_find_store(&v, &lba2, &n2), 0);
  CHECK_EQ(lba2, lba);
  CHECK_EQ(n2, 3072);
  /* Growing to a smaller size changes nothing. */
  CHECK_EQ(fat32_grow_store(&v, 100, 0, &n), 0);
  CHECK_EQ(n, 3072);
  dev_close(&d);
  CHECK(fsck_clean(img, NULL));
  CHECK_EQ(mdir_size(img, "::PIFS", "STORE    DAT", NULL), 3072 * 512);

  /* Grow to everything but a reserve. */
  CHECK(dev_open(&d, img) == 0);
  CHECK_EQ(fat32_mount(&v, &d.bd), 0);
  CHECK_EQ(fat32_grow_store(&v, 0, 1000, &n), 0);
  CHECK_EQ(fat32_count_free(&v, &free1), 0);
  CHECK_EQ(free1, 1000);
  CHECK_EQ(n, 3072 + (free0 - 2048) - 1000);
  CHECK_EQ(fat32_find_store(&v, &lba2, &n2), 0);
  CHECK_EQ(lba2, lba);
  CHECK_EQ(n2, n);
  dev_close(&d);
  CHECK(fsck_clean(img, NULL));
  CHECK_EQ(mdir_size(img, "::PIFS", "STORE    DAT", NULL), (long long)n * 512);
  CHECK(files_intact(img));
}

/* A file written right after the store blocks growth in place. */
static void test_grow_blocked(void) {
  char img[400];
  struct fdev d;
  struct fat32_vol v;
  uint64_t lba = 0, n = 0;
  uint32_t free0 = 0, free1 = 0;
  CHECK(from_base(img, sizeof img, "blocked.img") == 0);
  CHECK(dev_open(&d, img) == 0);
  memset(&v, 0, sizeof v);
  CHECK_EQ(fat32_mount(&v, &d.bd), 0);
  CHECK_EQ(fat32_create_store(&v, 512, 0, &lba, &n), 0);
  dev_close(&d);
  /* mtools follows the FSInfo next-free hint: the file lands after the store. */
  CHECK(sh("cd '%s' && mcopy -i '%s' RANDOM.BIN ::AFTER.BIN", srcdir, img) == 0);
  CHECK(dev_open(&d, img) == 0);
  CHECK_EQ(fat32_mount(&v, &d.bd), 0);
  CHECK_EQ(fat32_count_free(&v, &free0), 0);
  CHECK_EQ(fat32_grow_store(&v, 1024, 0, &n), PIFS_ENOSPC);
  CHECK_EQ(fat32_grow_store(&v, 0, 0, &n), 0);
  CHECK_EQ(n, 512);
  CHECK_EQ(fat32_count_free(&v, &free1), 0);
  CHECK_EQ(free1, free0);
  dev_close(&d);
  CHECK(fsck_clean(img, NULL));
  CHECK(mtype_equals(img, "::AFTER.BIN", random_src, RANDOM_LEN));
}

/* ---- 5. read_file ----------------------------------------------------- */

static void test_read_file(void) {
  char img[400];
  struct fdev d;
  struct fat32_vol v;
  static uint8_t buf[65536];
  uint32_t len = 0;
  CHECK(from_base(img, sizeof img, "read.img") == 0);
  /* A fragmented file: A, B, delete A, then C fills A's hole and goes on. */
  CHECK(sh("cd '%s' && mcopy -i '%s' CONFIG.TXT ::A.TXT && mcopy -i '%s' CONFIG.TXT ::B.TXT && "
           "mdel -i '%s' ::A.TXT",
           srcdir, img, img, img) == 0);
  CHECK(reset_hint(img) == 0); /* else mtools allocates after B, not in A's hole */
  CHECK(sh("cd '%s' && mcopy -i '%s' RANDOM.BIN ::FRAG.BIN", srcdir, img) == 0);
  CHECK(dev_open(&d, img) == 0);
  memset(&v, 0, sizeof v);
  CHECK_EQ(fat32_mount(&v, &d.bd), 0);

  CHECK_EQ(fat32_read_file(&v, "BOOT/RANDOM.BIN", buf, sizeof buf, &len), 0);
  CHECK_EQ(len, RANDOM_LEN);
  CHECK(memcmp(buf, random_src, RANDOM_LEN) == 0);
  memset(buf, 0, sizeof buf);
  CHECK_EQ(fat32_read_file(&v, "/boot/random.bin", buf, RANDOM_LEN, &len), 0);
  CHECK(memcmp(buf, random_src, RANDOM_LEN) == 0);
  CHECK_EQ(fat32_read_file(&v, "FRAG.BIN", buf, sizeof buf, &len), 0);
  CHECK_EQ(len, RANDOM_LEN);
  CHECK(memcmp(buf, random_src, RANDOM_LEN) == 0);
  CHECK_EQ(fat32_read_file(&v, "CONFIG.TXT", buf, sizeof buf, &len), 0);
  CHECK_EQ(len, strlen(config_src));
  CHECK(memcmp(buf, config_src, len) == 0);
  CHECK_EQ(fat32_read_file(&v, "B.TXT", buf, sizeof buf, &len), 0);
  CHECK(memcmp(buf, config_src, len) == 0);

  CHECK_EQ(fat32_read_file(&v, "BOOT/RANDOM.BIN", buf, RANDOM_LEN - 1, &len), PIFS_ERANGE);
  CHECK_EQ(len, RANDOM_LEN);
  CHECK_EQ(fat32_read_file(&v, "A.TXT", buf, sizeof buf, &len), PIFS_ENOENT);
  CHECK_EQ(fat32_read_file(&v, "PIFS/NODE.IMG", buf, sizeof buf, &len), PIFS_ENOENT);
  CHECK_EQ(fat32_read_file(&v, "CONFIG.TXT/X", buf, sizeof buf, &len), PIFS_ENOTDIR);
  CHECK_EQ(fat32_read_file(&v, "BOOT", buf, sizeof buf, &len), PIFS_EINVAL);
  CHECK_EQ(fat32_read_file(&v, "TOOLONGNAME.TXT", buf, sizeof buf, &len), PIFS_EINVAL);
  CHECK_EQ(d.writes, 0);
  dev_close(&d);
}

/* The bootloader's install: a file overwritten in place along its (here
 * fragmented) cluster chain; the rest of a partial last sector and the file
 * size stay; mtools reads the new bytes; fsck.fat finds nothing to fix; a
 * file too short for the data is refused without a write. */
static void test_overwrite_file(void) {
  char img[400], out[480];
  struct fdev d;
  struct fat32_vol v;
  static uint8_t data[RANDOM_LEN], back[RANDOM_LEN + 16];
  const uint32_t n = RANDOM_LEN - 100;
  CHECK(from_base(img, sizeof img, "over.img") == 0);
  CHECK(sh("cd '%s' && mcopy -i '%s' CONFIG.TXT ::A.TXT && mcopy -i '%s' CONFIG.TXT ::B.TXT && "
           "mdel -i '%s' ::A.TXT",
           srcdir, img, img, img) == 0);
  CHECK(reset_hint(img) == 0);
  CHECK(sh("cd '%s' && mcopy -i '%s' RANDOM.BIN ::FRAG.BIN", srcdir, img) == 0);
  for (uint32_t i = 0; i < RANDOM_LEN; i++) data[i] = (uint8_t)(random_src[i] ^ 0x5A ^ i);
  CHECK(dev_open(&d, img) == 0);
  memset(&v, 0, sizeof v);
  CHECK_EQ(fat32_mount(&v, &d.bd), 0);
  CHECK_EQ(fat32_overwrite_file(&v, "FRAG.BIN", data, RANDOM_LEN + 1), PIFS_ENOSPC);
  CHECK_EQ(fat32_overwrite_file(&v, "NOPE.BIN", data, 10), PIFS_ENOENT);
  CHECK_EQ(d.writes, 0);
  CHECK_EQ(fat32_overwrite_file(&v, "FRAG.BIN", data, n), 0);
  dev_close(&d);
  snprintf(out, sizeof out, "%s/over.out", tmp);
  CHECK(sh("mcopy -n -i '%s' ::FRAG.BIN '%s'", img, out) == 0);
  FILE *f = fopen(out, "rb");
  CHECK(f != NULL);
  size_t got = f ? fread(back, 1, sizeof back, f) : 0;
  if (f) fclose(f);
  CHECK_EQ(got, RANDOM_LEN);
  CHECK(memcmp(back, data, n) == 0);
  CHECK(memcmp(back + n, random_src + n, RANDOM_LEN - n) == 0);
  CHECK(fsck_clean(img, NULL));
}

/* ---- 6. full directories ---------------------------------------------- */

/* Root directory exactly full (16 entries in its one 512-byte cluster). */
static void test_root_full(void) {
  char img[400];
  struct fdev d;
  struct fat32_vol v;
  uint64_t lba = 0, n = 0, lba2 = 0, n2 = 0;
  uint8_t b[4];
  path(img, sizeof img, "rootfull.img");
  CHECK(fill_file(img, 64u << 20, 0xA5) == 0);
  CHECK(sh("mkfs.fat -F 32 -s 1 '%s' >/dev/null", img) == 0);
  CHECK(sh("cd '%s' && for i in 01 02 03 04 05 06 07 08 09 10 11 12 13 14 15 16; do "
           "cp CONFIG.TXT F$i.TXT && mcopy -i '%s' F$i.TXT :: || exit 1; done",
           srcdir, img) == 0);
  CHECK(dev_open(&d, img) == 0);
  memset(&v, 0, sizeof v);
  CHECK_EQ(fat32_mount(&v, &d.bd), 0);
  /* The root is one full cluster. */
  CHECK(pread_at(img, (uint64_t)v.reserved * 512 + v.root_clus * 4, b, 4) == 0);
  CHECK((ld32(b) & 0x0FFFFFFF) >= 0x0FFFFFF8);
  uint8_t root[512];
  CHECK(pread_at(img, data_lba(&v) * 512, root, 512) == 0);
  for (int i = 0; i < 16; i++) CHECK(root[i * 32] != 0 && root[i * 32] != 0xE5);

  uint32_t free0 = 0, free1 = 0;
  CHECK_EQ(fat32_count_free(&v, &free0), 0);
  CHECK_EQ(fat32_create_store(&v, 256, 0, &lba, &n), 0);
  CHECK_EQ(fat32_count_free(&v, &free1), 0);
  CHECK_EQ(free1, free0 - 256 - 2); /* store, PIFS, root extension */
  CHECK(pread_at(img, (uint64_t)v.reserved * 512 + v.root_clus * 4, b, 4) == 0);
  uint32_t ext = ld32(b) & 0x0FFFFFFF;
  CHECK(ext >= 2 && ext <= v.nclusters + 1);
  CHECK_EQ(fat32_find_store(&v, &lba2, &n2), 0);
  CHECK_EQ(lba2, lba);
  dev_close(&d);
  CHECK(fsck_clean(img, NULL));
  CHECK_EQ(mdir_size(img, "::PIFS", "STORE    DAT", NULL), 256 * 512);
  CHECK_EQ(mdir_size(img, "::", "F16      TXT", NULL), (long long)strlen(config_src));
  CHECK(mtype_equals(img, "::F01.TXT", config_src, strlen(config_src)));
}

/* An existing PIFS directory that is full: STORE.DAT goes in a new cluster. */
static void test_pifs_dir_full(void) {
  char img[400];
  struct fdev d;
  struct fat32_vol v;
  uint64_t lba = 0, n = 0, lba2 = 0, n2 = 0;
  CHECK(from_base(img, sizeof img, "pifsfull.img") == 0);
  /* ".", ".." and 14 files fill the 16 slots of the one cluster. */
  CHECK(sh("cd '%s' && mmd -i '%s' ::PIFS && for i in 01 02 03 04 05 06 07 08 09 10 11 12 13 14; do "
           "cp CONFIG.TXT P$i.TXT && mcopy -i '%s' P$i.TXT ::PIFS || exit 1; done",
           srcdir, img, img) == 0);
  CHECK(dev_open(&d, img) == 0);
  memset(&v, 0, sizeof v);
  CHECK_EQ(fat32_mount(&v, &d.bd), 0);
  uint32_t free0 = 0, free1 = 0;
  CHECK_EQ(fat32_count_free(&v, &free0), 0);
  CHECK_EQ(fat32_create_store(&v, 300, 0, &lba, &n), 0);
  CHECK_EQ(fat32_count_free(&v, &free1), 0);
  CHECK_EQ(free1, free0 - 300 - 1);
  CHECK_EQ(fat32_find_store(&v, &lba2, &n2), 0);
  CHECK_EQ(lba2, lba);
  CHECK_EQ(n2, 300);
  CHECK_EQ(fat32_create_store(&v, 300, 0, &lba2, &n2), PIFS_EEXIST);
  dev_close(&d);
  CHECK(fsck_clean(img, NULL));
  CHECK_EQ(mdir_size(img, "::PIFS", "STORE    DAT", NULL), 300 * 512);
  CHECK(mtype_equals(img, "::PIFS/P14.TXT", config_src, strlen(config_src)));
  CHECK(files_intact(img));
}

/* A deleted root entry is reused for PIFS; long names stay intact. */
static void test_reuse_deleted(void) {
  char img[400];
  struct fdev d;
  struct fat32_vol v;
  uint64_t lba = 0, n = 0;
  CHECK(from_base(img, sizeof img, "reuse.img") == 0);
  CHECK(sh("cd '%s' && mcopy -i '%s' CONFIG.TXT ::GONE.TXT && mcopy -i '%s' CONFIG.TXT ::KEPT.TXT && "
           "mdel -i '%s' ::GONE.TXT",
           srcdir, img, img, img) == 0);
  CHECK(dev_open(&d, img) == 0);
  memset(&v, 0, sizeof v);
  CHECK_EQ(fat32_mount(&v, &d.bd), 0);
  /* Find the deleted slot in the root. */
  uint8_t root[512];
  int slot = -1;
  CHECK(pread_at(img, data_lba(&v) * 512, root, 512) == 0);
  for (int i = 0; i < 16 && slot < 0; i++)
    if (root[i * 32] == 0xE5) slot = i;
  CHECK(slot >= 0);
  CHECK_EQ(fat32_create_store(&v, 128, 0, &lba, &n), 0);
  CHECK(pread_at(img, data_lba(&v) * 512, root, 512) == 0);
  CHECK(memcmp(root + slot * 32, "PIFS       ", 11) == 0);
  CHECK_EQ(root[slot * 32 + 11], 0x10);
  dev_close(&d);
  CHECK(fsck_clean(img, NULL));
  CHECK_EQ(mdir_size(img, "::PIFS", "STORE    DAT", NULL), 128 * 512);
  CHECK(mtype_equals(img, "::KEPT.TXT", config_src, strlen(config_src)));
  CHECK(files_intact(img));
}

/* A STORE.DAT whose chain is not contiguous is refused. */
static void test_find_fragmented(void) {
  char img[400];
  struct fdev d;
  struct fat32_vol v;
  uint64_t lba = 0, n = 0;
  CHECK(from_base(img, sizeof img, "fragstore.img") == 0);
  /* A's one-cluster hole, then (hint reset) STORE.DAT starts in the hole and
   * continues after B and PIFS. */
  CHECK(sh("cd '%s' && mcopy -i '%s' CONFIG.TXT ::A.TXT && mcopy -i '%s' CONFIG.TXT ::B.TXT && "
           "mdel -i '%s' ::A.TXT && mmd -i '%s' ::PIFS",
           srcdir, img, img, img, img) == 0);
  CHECK(reset_hint(img) == 0);
  CHECK(sh("cd '%s' && mcopy -i '%s' RANDOM.BIN ::PIFS/STORE.DAT", srcdir, img) == 0);
  CHECK(dev_open(&d, img) == 0);
  memset(&v, 0, sizeof v);
  CHECK_EQ(fat32_mount(&v, &d.bd), 0);
  CHECK_EQ(fat32_find_store(&v, &lba, &n), PIFS_ECORRUPT);
  CHECK_EQ(fat32_grow_store(&v, 0, 0, &n), PIFS_ECORRUPT);
  CHECK_EQ(fat32_create_store(&v, 100, 0, &lba, &n), PIFS_EEXIST);
  CHECK_EQ(d.writes, 0);
  /* ... though as a plain file it reads back fine. */
  static uint8_t buf[RANDOM_LEN];
  uint32_t len = 0;
  CHECK_EQ(fat32_read_file(&v, "pifs/store.dat", buf, sizeof buf, &len), 0);
  CHECK_EQ(len, RANDOM_LEN);
  CHECK(memcmp(buf, random_src, RANDOM_LEN) == 0);
  dev_close(&d);
  CHECK(fsck_clean(img, NULL));
}

/* A STORE.DAT made by mtools in one run is accepted; size not a multiple of
 * 512 rounds down. */
static void test_find_foreign(void) {
  char img[400];
  struct fdev d;
  struct fat32_vol v;
  uint64_t lba = 0, n = 0;
  CHECK(from_base(img, sizeof img, "foreign.img") == 0);
  CHECK(sh("cd '%s' && mmd -i '%s' ::PIFS && mcopy -i '%s' RANDOM.BIN ::PIFS/STORE.DAT", srcdir, img, img) == 0);
  CHECK(dev_open(&d, img) == 0);
  memset(&v, 0, sizeof v);
  CHECK_EQ(fat32_mount(&v, &d.bd), 0);
  CHECK_EQ(fat32_find_store(&v, &lba, &n), 0);
  CHECK_EQ(n, RANDOM_LEN / 512);
  uint8_t s[512];
  CHECK(pread_at(img, lba * 512, s, 512) == 0);
  CHECK(memcmp(s, random_src, 512) == 0);
  dev_close(&d);
}

int main(void) {
  const char *t = getenv("TMPDIR");
  snprintf(tmp, sizeof tmp, "%s/pifs-fat32-XXXXXX", t && *t ? t : "/tmp");
  if (!mkdtemp(tmp)) {
    perror("mkdtemp");
    return 1;
  }
  setenv("MTOOLS_SKIP_CHECK", "1", 1);
  setenv("MTOOLS_NO_VFAT", "0", 1);
  if (sh("command -v mkfs.fat >/dev/null && command -v fsck.fat >/dev/null && command -v mcopy >/dev/null") != 0) {
    fprintf(stderr, "test_fat32 needs mkfs.fat, fsck.fat and mtools\n");
    return 1;
  }
  if (make_base() != 0) {
    fprintf(stderr, "could not build the base image in %s\n", tmp);
    return 1;
  }

  RUN(test_mount_superfloppy);
  RUN(test_mount_mbr);
  RUN(test_refuse_fat16);
  RUN(test_refuse_fat12);
  RUN(test_refuse_zeroed);
  RUN(test_refuse_4096_sectors);
  RUN(test_refuse_exfat);
  RUN(test_refuse_mbr_linux);
  RUN(test_refuse_mbr_fat16);
  RUN(test_refuse_bad_bpb);
  RUN(test_create_fixed);
  RUN(test_create_largest);
  RUN(test_create_mbr);
  RUN(test_fat_top_bits);
  RUN(test_create_4g_cap);
  RUN(test_grow);
  RUN(test_grow_blocked);
  RUN(test_read_file);
  RUN(test_overwrite_file);
  RUN(test_root_full);
  RUN(test_pifs_dir_full);
  RUN(test_reuse_deleted);
  RUN(test_find_fragmented);
  RUN(test_find_foreign);

  int rc = CHECK_DONE();
  if (rc == 0)
    sh("rm -rf '%s'", tmp);
  else
    printf("images kept in %s\n", tmp);
  return rc;
}
