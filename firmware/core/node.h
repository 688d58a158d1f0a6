/* The node's protocol server: frames in, store operations, frames out. The
 * platform gives it a block device, a write function for the byte stream and
 * a few facts about the board; bytes read from the stream are pushed in with
 * node_feed. */
#ifndef PIFS_NODE_H
#define PIFS_NODE_H

#include "proto.h"
#include "store.h"

#define PIFS_FW_VERSION "0.1.0"

/* What a Pi knows of its SD card (all zero on a hosted node), reported in
 * INFO. From the CID: manufacturer id, OEM id, product name, revision,
 * serial number, manufacturing date (the CID's 12 bits: years since 2000
 * << 4 | month). From the SD status (ACMD13): the speed class code (0: class
 * 0, 1: 2, 2: 4, 3: 6, 4: 10) and the UHS speed grade, 0xFF when the card
 * did not say. */
struct pifs_card_info {
  uint64_t bytes;
  uint8_t mid;
  char oid[2];
  char pnm[5];
  uint8_t prv;
  uint16_t mdt;
  uint32_t psn;
  uint8_t speed_class, uhs_grade;
  uint8_t bus_width;     /* 1 or 4 */
  uint8_t high_capacity; /* SDHC/SDXC */
  uint32_t clock_hz;     /* the SD clock in use */
};

/* The CPU's state, reported in INFO (cpu_flags). */
#define PIFS_CPU_ICACHE 1u
#define PIFS_CPU_DCACHE 2u
#define PIFS_CPU_ALIGN_CHECK 4u
#define PIFS_CPU_BRANCH_PREDICT 8u

struct pifs_platform {
  const char *board;     /* "hosted", "raspi3b", "raspi0" */
  uint64_t serial;       /* board serial number (0 if unknown) */
  uint32_t window;       /* request bytes the host may have in flight */
  void *io;              /* passed to write */
  /* Writes all n bytes to the host; returns 0 or a negative error. */
  int (*write)(void *io, const void *buf, uint32_t n);
  /* Optional: the FAT date and time for files the node creates. */
  void (*fat_now)(uint16_t *date, uint16_t *time);
  uint32_t revision;  /* board revision code (0 if unknown) */
  uint32_t mem_bytes; /* RAM the CPU has (0 if unknown) */
  /* Optional: restarts the board (into its bootloader); does not return.
   * Without it REBOOT is refused. */
  void (*reboot)(void);
  /* The card's start-up, reported in INFO: 0, or the step of the SD
   * initialisation that failed last (pi/emmc.h), and how many tries failed. */
  int32_t card_init_step;
  uint32_t card_init_tries;
  struct pifs_card_info card;
  uint32_t cpu_flags;   /* PIFS_CPU_* */
  uint32_t sha256_kbps; /* SHA-256 over RAM, kB/s measured at boot (0: not measured) */
};

struct pifs_node {
  struct pifs_platform pl;
  struct pifs_bdev *bd;
  struct pifs_store *store; /* NULL while unformatted or refused */
  int card_err;             /* why store is NULL */
  struct proto_parser rx;
  uint8_t tx[PROTO_RAW_MAX];                    /* a response being built */
  uint8_t wire[PROTO_WIRE_SIZE(PROTO_RAW_MAX)]; /* and as it goes on the wire */
  /* counters, reported in INFO */
  uint32_t frames_ok, frames_bad, naks;
  uint64_t bytes_in; /* bytes received from the host since boot */
};

/* Mounts the card (never writing to it) and prepares the parser. */
void node_init(struct pifs_node *n, struct pifs_bdev *bd, const struct pifs_platform *pl);
/* Parses bytes from the host and answers every complete request. */
void node_feed(struct pifs_node *n, const uint8_t *data, uint32_t len);
/* The platform calls this when no byte has arrived for PIFS_IDLE_MS while a
 * frame was incomplete: the partial frame is dropped (the host that sent it
 * is gone or will retransmit). */
void node_idle(struct pifs_node *n);
/* Whether bytes of an incomplete frame are waiting. */
int node_partial(const struct pifs_node *n);
#define PIFS_IDLE_MS 100

void node_close(struct pifs_node *n);

#endif
