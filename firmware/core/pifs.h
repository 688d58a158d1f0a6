/* pifs node core: shared types, error codes and the platform interfaces.
 *
 * The core has no platform code. A block device and a byte stream are passed
 * in; the Pi firmware binds them to the EMMC and PL011 drivers, the hosted node
 * to an image file and a pty. */
#ifndef PIFS_H
#define PIFS_H

#include <stddef.h>
#include <stdint.h>

#define PIFS_SECTOR 512u

/* Errors are negative values; 0 is success. Names are stable: they appear on
 * the wire (as the i32 status of a response) and in the host's messages. */
enum pifs_err {
  PIFS_OK = 0,
  PIFS_EIO = -1,           /* block device failed */
  PIFS_EINVAL = -2,        /* bad argument / malformed request */
  PIFS_ENOENT = -3,        /* no such chunk / file */
  PIFS_EEXIST = -4,        /* already there */
  PIFS_ENOSPC = -5,        /* no room */
  PIFS_ENOMEM = -6,        /* out of RAM */
  PIFS_EBADHASH = -7,      /* content does not match its id */
  PIFS_ECORRUPT = -8,      /* on-card structure damaged */
  PIFS_ENOTFAT32 = -9,     /* no FAT32 volume found (generic) */
  PIFS_EFAT1216 = -10,     /* volume is FAT12 or FAT16 */
  PIFS_EEXFAT = -11,       /* volume is exFAT */
  PIFS_EBADSIG = -12,      /* missing 0x55AA signature */
  PIFS_ESECTOR = -13,      /* bytes per sector is not 512 */
  PIFS_EBPB = -14,         /* inconsistent BPB */
  PIFS_EUNFORMATTED = -15, /* card has no pifs store */
  PIFS_EWRONGCLUSTER = -16,/* store belongs to another cluster */
  PIFS_ECONFLICT = -17,    /* conditional operation lost (e.g. journal offset) */
  PIFS_ERANGE = -18,       /* offset/length outside the object */
  PIFS_EBUSY = -19,        /* too many pending operations */
  PIFS_EPROTO = -20,       /* protocol violation (unknown opcode, bad length) */
  PIFS_ENOTDIR = -21,      /* a path component is not a directory */
};

const char *pifs_err_to_str(int err);

/* Block device: 512-byte sectors. read/write return 0 or a negative pifs_err. */
struct pifs_bdev {
  void *ctx;
  uint64_t sectors; /* total number of sectors */
  int (*read)(void *ctx, uint64_t lba, uint32_t count, void *buf);
  int (*write)(void *ctx, uint64_t lba, uint32_t count, const void *buf);
  int (*flush)(void *ctx);
};

/* Little-endian load/store helpers: on-disk and on-wire fields are always
 * accessed by byte offset through these, never by casting packed structs. */
static inline uint16_t ld16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t ld32(const uint8_t *p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline uint64_t ld64(const uint8_t *p) { return (uint64_t)ld32(p) | ((uint64_t)ld32(p + 4) << 32); }
static inline void st16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static inline void st32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}
static inline void st64(uint8_t *p, uint64_t v) { st32(p, (uint32_t)v); st32(p + 4, (uint32_t)(v >> 32)); }

#endif
