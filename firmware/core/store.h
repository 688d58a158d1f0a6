/* The chunk store inside PIFS/STORE.DAT: two superblocks, a two-half
 * append-only log of checksummed records, and data sectors handed out from an
 * in-RAM bitmap derived from the log at mount. See docs/SPEC.md. */
#ifndef PIFS_STORE_H
#define PIFS_STORE_H

#include "fat32.h"
#include "pifs.h"

#define PIFS_ID_LEN 32
#define PIFS_MAX_CHUNK (8u * 1024u * 1024u)   /* largest chunk the node accepts */
#define PIFS_MAX_JOURNAL_ENTRY 16384u          /* largest single journal append */
#define PIFS_MAX_PENDING 4                     /* concurrent resumable puts */
#define PIFS_PUT_AHEAD 32768u                  /* bytes of a put held past a gap */
#define PIFS_PUT_RANGES 16                     /* separate runs of them */

struct pifs_store;

struct pifs_store_info {
  uint8_t cluster_id[16];
  uint32_t node_id;
  uint32_t generation;     /* superblock generation */
  uint32_t epoch;          /* log epoch (bumped by compaction and re-format) */
  uint64_t store_lba;      /* absolute first sector of STORE.DAT */
  uint64_t store_sectors;  /* size of STORE.DAT in sectors */
  uint64_t data_sectors;   /* sectors available for chunk data */
  uint64_t free_sectors;   /* data sectors not used by a chunk or a pending put */
  uint32_t chunks;         /* committed chunks */
  uint64_t journal_len;    /* end of the metadata journal (absolute offset) */
  uint64_t journal_start;  /* first journal byte still held: trimmed before it */
  uint32_t log_used;       /* sectors used in the active log half */
  uint32_t log_half;       /* sectors in one log half */
};

struct pifs_format_opts {
  uint8_t cluster_id[16];
  uint32_t node_id;
  uint64_t size_sectors;    /* 0: the largest free run less reserve_sectors */
  uint64_t reserve_sectors; /* free space to leave on the FAT volume */
  int force;                /* re-format a store that belongs to another cluster */
  uint32_t nonce;           /* random from the host: the first log epoch of a new store */
  uint16_t fat_date, fat_time;
};

/* Mounts the FAT32 volume and the store. PIFS_EUNFORMATTED when the volume
 * has no PIFS/STORE.DAT (or no valid superblock in it: then the card is
 * treated as not ours and is refused, see the spec). */
int store_open(struct pifs_store **out, struct pifs_bdev *bd);
/* Creates (or, with the same cluster id or force, re-initialises) the store. */
int store_format(struct pifs_store **out, struct pifs_bdev *bd, const struct pifs_format_opts *o);
void store_close(struct pifs_store *s);
void store_info(struct pifs_store *s, struct pifs_store_info *info);

/* Resumable put. begin returns a handle and how many bytes the node already
 * holds for this id (PIFS_EEXIST if the chunk is committed). *have is the
 * contiguous prefix the node holds. Data past a gap (a frame lost on the
 * line) is held in RAM, up to PIFS_PUT_AHEAD bytes past *have in at most
 * PIFS_PUT_RANGES runs, and written when the gap is filled; data beyond
 * that is answered PIFS_ERANGE with *have.
 * commit reads the chunk back from the card, checks its hash against the id
 * and only then appends the log record (data first, record second). */
int store_put_begin(struct pifs_store *s, const uint8_t id[32], uint32_t size, uint32_t *handle,
                    uint32_t *have);
int store_put_data(struct pifs_store *s, uint32_t handle, uint32_t offset, const void *data,
                   uint32_t n, uint32_t *have);
int store_put_commit(struct pifs_store *s, uint32_t handle);

/* Reads len bytes at offset of a chunk. The whole chunk's hash is checked
 * against its id before any byte of it is returned (re-checked after 4 other
 * chunks were read). */
int store_get(struct pifs_store *s, const uint8_t id[32], uint32_t offset, void *buf, uint32_t len,
              uint32_t *size);
int store_has(struct pifs_store *s, const uint8_t id[32], uint32_t *size);
int store_delete(struct pifs_store *s, const uint8_t id[32]);

/* Iterates committed chunks from *cursor; calls fn for at most max entries and
 * sets *cursor to where the next page starts (0xFFFFFFFF at the end). */
int store_list(struct pifs_store *s, uint32_t *cursor, uint32_t max,
               void (*fn)(void *ctx, const uint8_t id[32], uint32_t size), void *ctx);

/* Verifies up to max chunks from *cursor against their hashes; calls bad() for
 * each damaged one. */
int store_scrub(struct pifs_store *s, uint32_t *cursor, uint32_t max, uint32_t *checked,
                void (*bad)(void *ctx, const uint8_t id[32], int err), void *ctx);

/* Metadata journal: append succeeds only if the journal is expected_len long
 * (PIFS_ECONFLICT otherwise); *len gets the length after the call. */
int store_journal_append(struct pifs_store *s, uint64_t expected_len, const void *data, uint32_t n,
                         uint64_t *len);
/* Reads from offset (journal_start .. journal_len, else PIFS_ERANGE). */
int store_journal_read(struct pifs_store *s, uint64_t offset, void *buf, uint32_t max, uint32_t *n,
                       uint64_t *len);
/* Forgets the journal before offset x (offsets stay absolute). x must be
 * >= journal_start and, when x <= journal_len, a record boundary (else
 * PIFS_EINVAL). x > journal_len empties the journal: start = len = x, so the
 * next append is expected at x. A TRIM record is written and flushed before
 * the call returns; *start and *len get the journal's state after it. */
int store_journal_trim(struct pifs_store *s, uint64_t x, uint64_t *start, uint64_t *len);

/* Grows PIFS/STORE.DAT in place over the free clusters right after it, to
 * want_sectors (0: as far as they go, leaving reserve_sectors free on the
 * volume). The new sectors join the data region. FAT metadata is written
 * here, never on the hot path. */
int store_grow(struct pifs_store *s, uint64_t want_sectors, uint64_t reserve_sectors);

/* Forces a log compaction (normally done when the active half fills). */
int store_compact(struct pifs_store *s);

#endif
