/* The EMMC controller (an SDHCI host) and the SD card behind it: card
 * initialisation as the SD spec describes it (CMD0, CMD8, ACMD41 until ready,
 * CMD2, CMD3, CSD for the capacity, CMD7, 4-bit bus), then single and
 * multiple block reads and writes by programmed I/O. Every wait has a time
 * limit; a failed command resets the controller's command and data lines and
 * is tried again (three times) before the error reaches the core as EIO.
 * SDSC cards are addressed in bytes, SDHC/SDXC in blocks.
 *
 * What silicon needs and QEMU does not show (each tested against the
 * register model of firmware/tests/test_emmc.c):
 * - the SD pins are set up here, not left to whatever the GPU firmware did:
 *   GPIO 48-53 to ALT3 (the EMMC controller), pull-ups on 49-53 (CMD and
 *   DAT0-3), and on the Pi 3 GPIO 34-39 (where the firmware may have routed
 *   the controller, to the Wi-Fi chip) back to inputs; as bzt's
 *   raspi3-tutorial and Circle's EMMC driver do;
 * - at least 1 ms (74 SD clocks and more) of the 400 kHz clock before CMD0;
 * - while the SD clock is slow, two SD clocks between writes to the
 *   controller: the Arasan controller can lose a write that follows another
 *   within two of them (the clock-domain crossing Linux's sdhci-iproc and
 *   Circle wait out);
 * - after a data error the card may still be in a data state, where it
 *   ignores every command but CMD12: the transfer is stopped with CMD12 and
 *   CMD13 is asked until the card is back in the transfer state, then the
 *   transfer is tried again (before, one CRC error left the card refusing
 *   every command until a reboot);
 * - the whole initialisation is tried three times.
 *
 * What the card says of itself goes to INFO (c->info): the CID read at CMD2,
 * the capacity from the CSD, and the speed class from the SD status
 * (ACMD13, a 64-byte data read). */
#include "emmc.h"

#include <string.h>

#include "board.h"
#include "pifs.h"

#define ARG2 (EMMC + 0x00)
#define BLKSIZECNT (EMMC + 0x04)
#define ARG1 (EMMC + 0x08)
#define CMDTM (EMMC + 0x0C)
#define RESP0 (EMMC + 0x10)
#define RESP1 (EMMC + 0x14)
#define RESP2 (EMMC + 0x18)
#define RESP3 (EMMC + 0x1C)
#define DATA (EMMC + 0x20)
#define STATUS (EMMC + 0x24)
#define CONTROL0 (EMMC + 0x28)
#define CONTROL1 (EMMC + 0x2C)
#define INTERRUPT (EMMC + 0x30)
#define IRPT_MASK (EMMC + 0x34)
#define IRPT_EN (EMMC + 0x38)

/* CMDTM */
#define TM_BLKCNT_EN (1u << 1)
#define TM_AUTO_CMD12 (1u << 2)
#define TM_READ (1u << 4)
#define TM_MULTI (1u << 5)
#define RSP_NONE (0u << 16)
#define RSP_136 (1u << 16)
#define RSP_48 (2u << 16)
#define RSP_48B (3u << 16)
#define CRC_CHK (1u << 19)
#define IDX_CHK (1u << 20)
#define IS_DATA (1u << 21)
#define CMD(i) ((uint32_t)(i) << 24)

/* INTERRUPT */
#define INT_CMD_DONE (1u << 0)
#define INT_DATA_DONE (1u << 1)
#define INT_WRITE_RDY (1u << 4)
#define INT_READ_RDY (1u << 5)
#define INT_ERR_MASK 0xFFFF8000u

/* CONTROL1 */
#define C1_CLK_INTLEN (1u << 0)
#define C1_CLK_STABLE (1u << 1)
#define C1_CLK_EN (1u << 2)
#define C1_SRST_HC (1u << 24)
#define C1_SRST_CMD (1u << 25)
#define C1_SRST_DATA (1u << 26)

#define R1 (RSP_48 | CRC_CHK | IDX_CHK)
#define R1B (RSP_48B | CRC_CHK | IDX_CHK)
#define R2 (RSP_136 | CRC_CHK)
#define R3 (RSP_48)
#define R6 (RSP_48 | CRC_CHK | IDX_CHK)
#define R7 (RSP_48 | CRC_CHK | IDX_CHK)

/* GPIO pull-up/down control (GPPUD) */
#define PUD_UP 2u

#define CMD_TIMEOUT_US 100000u
#define CLOCK_BEFORE_CMD0_US 1000u /* 74 clocks at 400 kHz are 185 us: a margin */
#define SLOW_WRITE_GAP_US 6u        /* two SD clocks at 400 kHz, rounded up */
#define STOP_TIMEOUT_US 500000u     /* for the card to leave its data state */
#define INIT_TRIES 3
/* CMD13's card status, bits 12..9 */
#define CARD_STATE(s) (((s) >> 9) & 0xFu)
#define STATE_TRAN 4u
#define DATA_TIMEOUT_US 2000000u /* per block: a card may take long to program */
#define TRIES 3
#define MAX_BLOCKS 65535u

/* Whether the SD clock is at identification speed (set by set_clock). */
static int slow_clock;

/* A write to a controller register: spaced two SD clocks from the next one
 * while the clock is slow. */
static void ew32(uintptr_t reg, uint32_t v) {
  w32(reg, v);
  if (slow_clock) timer_sleep_us(SLOW_WRITE_GAP_US);
}

static int wait_reg(uintptr_t reg, uint32_t mask, uint32_t want, uint32_t us) {
  uint64_t end = timer_us() + us;
  while ((r32(reg) & mask) != want)
    if (timer_us() > end) return -1;
  return 0;
}

/* Waits for any of `bits` in INTERRUPT; an error bit or the time limit is a
 * failure. The bits found are cleared. */
static int wait_int(uint32_t bits, uint32_t us) {
  uint64_t end = timer_us() + us;
  for (;;) {
    uint32_t v = r32(INTERRUPT);
    if (v & INT_ERR_MASK) {
      ew32(INTERRUPT, v);
      return -1;
    }
    if (v & bits) {
      ew32(INTERRUPT, v & bits);
      return 0;
    }
    if (timer_us() > end) return -1;
  }
}

static void reset_lines(void) {
  ew32(CONTROL1, r32(CONTROL1) | C1_SRST_CMD | C1_SRST_DATA);
  wait_reg(CONTROL1, C1_SRST_CMD | C1_SRST_DATA, 0, CMD_TIMEOUT_US);
  ew32(INTERRUPT, 0xFFFFFFFFu);
}

static int command(uint32_t cmdtm, uint32_t arg) {
  if (wait_reg(STATUS, 3u, 0, CMD_TIMEOUT_US)) { /* CMD and DAT inhibit */
    reset_lines();
    return -1;
  }
  ew32(INTERRUPT, 0xFFFFFFFFu);
  ew32(ARG1, arg);
  ew32(CMDTM, cmdtm);
  if (wait_int(INT_CMD_DONE, CMD_TIMEOUT_US)) {
    reset_lines();
    return -1;
  }
  return 0;
}

static int app_command(struct emmc *c, uint32_t cmdtm, uint32_t arg) {
  if (command(CMD(55) | R1, c->rca << 16)) return -1;
  return command(cmdtm, arg);
}

/* Sets the SD clock to at most `hz` from the controller's base clock. */
static int set_clock(struct emmc *c, uint32_t hz) {
  slow_clock = 1; /* until the new clock runs: the writes below are spaced */
  uint32_t div = (c->base_hz + 2 * hz - 1) / (2 * hz); /* 10-bit divided clock mode */
  if (div > 0x3FF) div = 0x3FF;
  uint32_t v = r32(CONTROL1) & ~(C1_CLK_EN | 0xFFE0u);
  ew32(CONTROL1, v);
  timer_sleep_us(10);
  v |= ((div & 0xFF) << 8) | (((div >> 8) & 3) << 6) | C1_CLK_INTLEN;
  v = (v & ~(0xFu << 16)) | (0xEu << 16); /* data timeout: the longest */
  ew32(CONTROL1, v);
  if (wait_reg(CONTROL1, C1_CLK_STABLE, C1_CLK_STABLE, CMD_TIMEOUT_US)) return -1;
  ew32(CONTROL1, v | C1_CLK_EN);
  timer_sleep_us(10);
  slow_clock = hz <= 400000u;
  c->info.clock_hz = c->base_hz / (2 * div);
  return 0;
}

/* Capacity in 512-byte sectors from the CSD (R2: response bits 127..8 sit in
 * RESP0..3 bits 119..0). */
static uint64_t csd_sectors(const uint32_t r[4]) {
#define CSD(hi, lo) csd_bits(r, hi, lo)
  uint32_t ver = csd_bits(r, 127, 126);
  if (ver == 1) return ((uint64_t)CSD(69, 48) + 1) * 1024u; /* (C_SIZE+1) · 512 KiB */
  uint64_t c_size = CSD(73, 62), mult = CSD(49, 47), bl_len = CSD(83, 80);
  return ((c_size + 1) << (mult + 2 + bl_len)) / 512u;
#undef CSD
}

uint32_t csd_bits(const uint32_t r[4], uint32_t hi, uint32_t lo) {
  uint32_t v = 0;
  for (uint32_t b = hi + 1; b-- > lo;) {
    uint32_t pos = b - 8; /* the CRC byte is not in the registers */
    v = (v << 1) | ((r[pos / 32] >> (pos % 32)) & 1);
  }
  return v;
}

/* A function select of pin `pin` (3 bits in GPFSEL pin/10). */
static void gpio_function(uint32_t pin, uint32_t fn) {
  uintptr_t reg = GPFSEL0 + 4u * (pin / 10u);
  uint32_t shift = 3u * (pin % 10u);
  w32(reg, (r32(reg) & ~(7u << shift)) | (fn << shift));
}

/* The SD card's pins, as the EMMC controller needs them (see the top). */
static void sd_pins(void) {
  barrier();
#if defined(PI3)
  for (uint32_t pin = 34; pin <= 39; pin++) gpio_function(pin, 0); /* input */
#endif
  for (uint32_t pin = 48; pin <= 53; pin++) gpio_function(pin, 7); /* ALT3 */
  /* Pull-ups on 49-53, the BCM2835 way: set the control, wait 150 cycles,
   * clock it into the pins, wait, then clear both. */
  w32(GPPUD, PUD_UP);
  timer_sleep_us(5);
  w32(GPPUDCLK1, 0x1Fu << (49 - 32));
  timer_sleep_us(5);
  w32(GPPUD, 0);
  w32(GPPUDCLK1, 0);
  barrier(); /* from the GPIO to the controller */
}

static void recover(struct emmc *c);

/* The CID's fields (an R2 response, as csd_bits reads it). */
static void read_cid(struct pifs_card_info *in, const uint32_t r[4]) {
  in->mid = (uint8_t)csd_bits(r, 127, 120);
  for (uint32_t i = 0; i < 2; i++) in->oid[i] = (char)csd_bits(r, 119 - 8 * i, 112 - 8 * i);
  for (uint32_t i = 0; i < 5; i++) in->pnm[i] = (char)csd_bits(r, 103 - 8 * i, 96 - 8 * i);
  in->prv = (uint8_t)csd_bits(r, 63, 56);
  in->psn = csd_bits(r, 55, 24);
  in->mdt = (uint16_t)csd_bits(r, 19, 8);
}

/* ACMD13: the 64-byte SD status, for the speed class (bits 447..440, byte
 * 8 as sent) and the UHS speed grade (bits 399..396, the top of byte 14).
 * Unknown (0xFF) when the card does not answer. */
static void read_sd_status(struct emmc *c) {
  uint8_t st[64];
  c->info.speed_class = c->info.uhs_grade = 0xFF;
  ew32(BLKSIZECNT, 64u | (1u << 16));
  if (app_command(c, CMD(13) | R1 | IS_DATA | TM_READ, 0)) return;
  if (wait_int(INT_READ_RDY, DATA_TIMEOUT_US)) {
    recover(c);
    return;
  }
  for (uint32_t i = 0; i < 64; i += 4) { /* the first byte sent is the word's lowest */
    uint32_t v = r32(DATA);
    st[i] = (uint8_t)v, st[i + 1] = (uint8_t)(v >> 8);
    st[i + 2] = (uint8_t)(v >> 16), st[i + 3] = (uint8_t)(v >> 24);
  }
  if (wait_int(INT_DATA_DONE, DATA_TIMEOUT_US)) {
    recover(c);
    return;
  }
  c->info.speed_class = st[8];
  c->info.uhs_grade = st[14] >> 4;
}

static int init_once(struct emmc *c) {
  c->sectors = 0;
  c->rca = 0;
  memset(&c->info, 0, sizeof c->info);
  slow_clock = 1; /* the card is at identification speed until the end */
  if (mbox_get_clock(CLOCK_EMMC, &c->base_hz) || c->base_hz == 0) c->base_hz = 50000000u;
  ew32(CONTROL0, 0);
  ew32(CONTROL1, C1_SRST_HC);
  if (wait_reg(CONTROL1, C1_SRST_HC, 0, CMD_TIMEOUT_US)) return -1;
  ew32(IRPT_EN, 0);              /* no interrupt lines: we poll */
  ew32(IRPT_MASK, 0xFFFFFFFFu);  /* but want every status bit */
  ew32(INTERRUPT, 0xFFFFFFFFu);
  if (set_clock(c, 400000)) return -2;
  timer_sleep_us(CLOCK_BEFORE_CMD0_US); /* the card needs clocks before its first command */

  if (command(CMD(0) | RSP_NONE, 0)) return -3;
  int v2 = command(CMD(8) | R7, 0x1AA) == 0 && (r32(RESP0) & 0xFFF) == 0x1AA;
  uint32_t ocr = 0;
  uint64_t end = timer_us() + 1000000;
  do { /* ACMD41 until the card leaves its busy state, at most a second */
    if (app_command(c, CMD(41) | R3, 0x00FF8000u | (v2 ? 0x40000000u : 0))) return -4;
    ocr = r32(RESP0);
    if (ocr & 0x80000000u) break;
    timer_sleep_us(10000);
  } while (timer_us() < end);
  if (!(ocr & 0x80000000u)) return -5;
  c->high_capacity = (ocr >> 30) & 1;
  if (command(CMD(2) | R2, 0)) return -6;
  uint32_t cid[4] = {r32(RESP0), r32(RESP1), r32(RESP2), r32(RESP3)};
  read_cid(&c->info, cid);
  if (command(CMD(3) | R6, 0)) return -7;
  c->rca = r32(RESP0) >> 16;
  if (command(CMD(9) | R2, c->rca << 16)) return -8;
  uint32_t csd[4] = {r32(RESP0), r32(RESP1), r32(RESP2), r32(RESP3)};
  c->sectors = csd_sectors(csd);
  if (command(CMD(7) | R1B, c->rca << 16)) return -9;
  if (!c->high_capacity && command(CMD(16) | R1, 512)) return -10;
  c->info.bus_width = 1;
  if (app_command(c, CMD(6) | R1, 2) == 0) {
    ew32(CONTROL0, r32(CONTROL0) | (1u << 1)); /* 4-bit */
    c->info.bus_width = 4;
  }
  if (set_clock(c, 25000000)) return -11;
  if (c->sectors == 0) return -12;
  c->info.bytes = c->sectors * 512u;
  c->info.high_capacity = (uint8_t)c->high_capacity;
  read_sd_status(c);
  return 0;
}

int emmc_init(struct emmc *c) {
  sd_pins();
  int step = 0;
  for (int t = 0; t < INIT_TRIES; t++) {
    step = init_once(c);
    c->init_step = step;
    if (step == 0) break;
    c->init_tries = (uint32_t)t + 1;
  }
  barrier();
  return step;
}

/* After a data error: stops the transfer (CMD12) and waits until the card
 * is back in its transfer state (CMD13), so that it takes commands again. */
static void recover(struct emmc *c) {
  reset_lines();
  command(CMD(12) | R1B, 0);
  uint64_t end = timer_us() + STOP_TIMEOUT_US;
  while (timer_us() < end) {
    if (command(CMD(13) | R1, c->rca << 16) == 0 && CARD_STATE(r32(RESP0)) == STATE_TRAN) return;
    timer_sleep_us(1000);
  }
}

static int transfer(struct emmc *c, int write, uint64_t lba, uint32_t count, uint8_t *buf) {
  uint32_t addr = (uint32_t)(c->high_capacity ? lba : lba * 512u);
  uint32_t tm = IS_DATA | R1 | (write ? 0 : TM_READ);
  if (count > 1) tm |= TM_MULTI | TM_BLKCNT_EN | TM_AUTO_CMD12 | CMD(write ? 25 : 18);
  else tm |= CMD(write ? 24 : 17);
  ew32(BLKSIZECNT, 512u | (count << 16));
  if (command(tm, addr)) return -1;
  for (uint32_t b = 0; b < count; b++, buf += 512) {
    if (wait_int(write ? INT_WRITE_RDY : INT_READ_RDY, DATA_TIMEOUT_US)) {
      recover(c);
      return -1;
    }
    for (uint32_t i = 0; i < 512; i += 4) {
      if (write) {
        w32(DATA, (uint32_t)buf[i] | (uint32_t)buf[i + 1] << 8 | (uint32_t)buf[i + 2] << 16 |
                      (uint32_t)buf[i + 3] << 24);
      } else {
        uint32_t v = r32(DATA);
        buf[i] = (uint8_t)v, buf[i + 1] = (uint8_t)(v >> 8);
        buf[i + 2] = (uint8_t)(v >> 16), buf[i + 3] = (uint8_t)(v >> 24);
      }
    }
  }
  if (wait_int(INT_DATA_DONE, DATA_TIMEOUT_US)) {
    recover(c);
    return -1;
  }
  return 0;
}

static int io(struct emmc *c, int write, uint64_t lba, uint32_t count, uint8_t *buf) {
  if (lba + count > c->sectors || lba + count < lba) return PIFS_EIO;
  int err = 0;
  barrier();
  while (count && !err) {
    uint32_t n = count > MAX_BLOCKS ? MAX_BLOCKS : count;
    int tries = 0;
    while (transfer(c, write, lba, n, buf)) {
      c->errors++;
      if (++tries == TRIES) {
        err = PIFS_EIO;
        break;
      }
    }
    lba += n, count -= n, buf += (uint64_t)n * 512u;
  }
  barrier();
  return err;
}

static int bd_read(void *ctx, uint64_t lba, uint32_t count, void *buf) {
  return io(ctx, 0, lba, count, buf);
}

static int bd_write(void *ctx, uint64_t lba, uint32_t count, const void *buf) {
  return io(ctx, 1, lba, count, (uint8_t *)(uintptr_t)buf);
}

/* A write is complete on the card when DATA_DONE came (the controller waits
 * out the card's busy signal), so there is nothing left to flush. */
static int bd_flush(void *ctx) {
  (void)ctx;
  return 0;
}

void emmc_bdev(struct emmc *c, struct pifs_bdev *bd) {
  bd->ctx = c;
  bd->sectors = c->sectors;
  bd->read = bd_read;
  bd->write = bd_write;
  bd->flush = bd_flush;
}
