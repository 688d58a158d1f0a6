/* The SD card on the EMMC controller, as a pifs block device. */
#ifndef PI_EMMC_H
#define PI_EMMC_H

#include <stdint.h>

#include "node.h"
#include "pifs.h"

struct emmc {
  uint32_t base_hz;      /* controller base clock */
  uint32_t rca;          /* relative card address */
  int high_capacity;     /* SDHC/SDXC: block addressing */
  uint64_t sectors;      /* card capacity */
  uint32_t errors;       /* transfers retried */
  int init_step;         /* 0, or the step where the last initialisation failed */
  uint32_t init_tries;   /* initialisations that failed before the last one */
  struct pifs_card_info info; /* CID, capacity, speed class, bus and clock */
};

/* Sets up the SD pins, resets the controller and initialises the card
 * (tried three times): 0, or a negative step number telling where the last
 * try failed (also in c->init_step). Fills c->info; a card that does not
 * give its SD status (ACMD13) still initialises, its speed class unknown. */
int emmc_init(struct emmc *c);
/* Binds an initialised card to a block device. */
void emmc_bdev(struct emmc *c, struct pifs_bdev *bd);
/* Bits hi..lo of a CSD/CID held as the controller stores an R2 response. */
uint32_t csd_bits(const uint32_t r[4], uint32_t hi, uint32_t lo);

#endif
