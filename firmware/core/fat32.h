/* FAT32 volume access for the node core: find and validate the volume, and
 * create/find/grow the one contiguous file PIFS/STORE.DAT that holds the
 * store. FAT metadata is written only by fat32_create_store and
 * fat32_grow_store, never on the hot path. The only other file ever written
 * is the node firmware, in place, by fat32_overwrite_file (bootloader). */
#ifndef PIFS_FAT32_H
#define PIFS_FAT32_H

#include "pifs.h"

struct fat32_vol {
  struct pifs_bdev *bd;
  uint64_t part_lba;     /* absolute LBA of the volume's boot sector */
  uint32_t total_sectors;/* volume size in sectors (BPB) */
  uint32_t sec_per_clus;
  uint32_t reserved;     /* reserved sectors (FATs start here) */
  uint32_t nfats;
  uint32_t fat_sz;       /* sectors per FAT */
  uint32_t root_clus;
  uint32_t fsinfo_sec;   /* relative to part_lba; 0 if none */
  uint32_t data_start;   /* first data sector, relative to part_lba */
  uint32_t nclusters;    /* number of data clusters (cluster 2 .. nclusters+1) */
  int superfloppy;       /* 1: no partition table */
  /* FAT date/time stamped on entries that this module creates. Caller sets
   * them (the core has no clock); 0 means 2026-01-01 00:00. */
  uint16_t now_date, now_time;
  /* fat32_create_store refuses (PIFS_ENOSPC, nothing written) to make a
   * store smaller than this; set by the caller, 0 means no minimum. */
  uint32_t min_store_sectors;
};

/* Finds and validates the FAT32 volume on bd (MBR partition of type 0x0B or
 * 0x0C, else a superfloppy volume). Read-only. Returns 0 or one of
 * PIFS_EBADSIG, PIFS_EFAT1216, PIFS_EEXFAT, PIFS_ESECTOR, PIFS_EBPB,
 * PIFS_ENOTFAT32, PIFS_EIO. */
int fat32_mount(struct fat32_vol *v, struct pifs_bdev *bd);

/* Human-readable reason for the last fat32_mount refusal (static string). */
const char *fat32_reason(void);

/* Finds PIFS/STORE.DAT. On success *lba is its first absolute sector and
 * *sectors its size in sectors (file size / 512). PIFS_ENOENT if absent,
 * PIFS_ECORRUPT if it is not one contiguous cluster run. */
int fat32_find_store(struct fat32_vol *v, uint64_t *lba, uint64_t *sectors);

/* Creates PIFS/ (if absent) and PIFS/STORE.DAT as one contiguous run of free
 * clusters. want_sectors = 0 means "the largest free run, less
 * reserve_sectors of free space left on the volume". Updates both FATs, the
 * FSInfo free count and next-free hint, and the directory entries (8.3 names,
 * dates). PIFS_EEXIST if STORE.DAT already exists, PIFS_ENOSPC if no run is
 * large enough. */
int fat32_create_store(struct fat32_vol *v, uint64_t want_sectors, uint64_t reserve_sectors,
                       uint64_t *lba, uint64_t *sectors);

/* Grows STORE.DAT in place to want_sectors (0: as far as the free clusters
 * directly after it allow, less reserve_sectors). The run must stay
 * contiguous; *sectors gets the new size. */
int fat32_grow_store(struct fat32_vol *v, uint64_t want_sectors, uint64_t reserve_sectors,
                     uint64_t *sectors);

/* Reads a whole file named by an 8.3 path such as "PIFS/NODE.IMG" or
 * "CONFIG.TXT" (case-insensitive) into buf (at most max bytes); *len gets its
 * size. PIFS_ERANGE if it does not fit. */
int fat32_read_file(struct fat32_vol *v, const char *path, void *buf, uint32_t max, uint32_t *len);

/* Overwrites the first len bytes of an existing file in place, along its
 * cluster chain, then flushes: no FAT, directory entry or file size changes.
 * PIFS_ENOSPC if the file is shorter than len. (The bootloader installs node
 * firmware into a file made large enough in advance.) */
int fat32_overwrite_file(struct fat32_vol *v, const char *path, const void *data, uint32_t len);

/* Number of free clusters (counted from the FAT, not trusted from FSInfo). */
int fat32_count_free(struct fat32_vol *v, uint32_t *free_clusters);

#endif
