/* The Pi's SD driver (pi/emmc.c), built on the host against a model of the
 * registers it drives: the GPIO function selects and pull-ups, and an SDHCI
 * controller with an SD card behind it that follows the card's states
 * (idle, ready, ident, stby, tran, data, rcv) closely enough for what QEMU
 * does not show: the pins set before CMD0, the clock before it, two SD
 * clocks between register writes at 400 kHz, a data CRC error in the middle
 * of a multi-block transfer after which the card ignores every command but
 * CMD12, commands that go unanswered (CMD0 and every later one), the
 * barriers between peripherals the Zero needs (fence.h), and what the card
 * says of itself (CID, capacity, SD status). Time is the model's: every
 * register read takes 1 us, every sleep what it asks. */
#include <stdint.h>
#include <string.h>

#include "board.h"
#include "check.h"
#include "emmc.h"
#include "fence.h"

#define GPIO_BASE (PERIPH + 0x200000)
#define EMMC_BASE (PERIPH + 0x300000)
#define BASE_HZ 50000000u
#define SECTORS 2048u /* a 1 MiB card */

enum { IDLE, READY, IDENT, STBY, TRAN, DATA_ST, RCV };

static struct {
  uint64_t now;
  /* GPIO */
  uint32_t gpfsel[6];
  uint32_t gppud;
  uint64_t pulled_up; /* pins whose pull-up was clocked in (bit = pin) */
  /* controller */
  uint32_t control0, control1, interrupt, arg1, blksizecnt, resp[4];
  uint32_t sd_hz;     /* 0: clock off */
  uint64_t clock_on_at;
  uint64_t last_write; /* of a controller register */
  uint64_t min_slow_gap;
  /* card */
  int state, app, acmd41;
  uint32_t rca;
  uint8_t card[SECTORS * 512];
  /* transfer in progress */
  int writing;
  uint32_t blocks, block, word;
  uint64_t lba;
  int status_read; /* the transfer is ACMD13's 64-byte SD status */
  /* what the driver did */
  int saw_cmd0;
  uint64_t cmd0_after_clock;
  int pins_ok_at_cmd0;
  int cmd12s, cmd13s, rejected;
  /* faults to inject */
  int silent[64];         /* command i unanswered this many times (a timeout) */
  int crc_at_block;       /* a data CRC error at this block of the next transfer (-1: none) */
} m;

#define INT_CMD_DONE (1u << 0)
#define INT_DATA_DONE (1u << 1)
#define INT_WRITE_RDY (1u << 4)
#define INT_READ_RDY (1u << 5)
#define INT_ERR (1u << 15)
#define INT_CTO (1u << 16)
#define INT_DCRC (1u << 21)

/* --- the board functions the driver calls ------------------------------ */

/* As the real ones (pi/timer.c, pi/mbox.c; test_barriers.c checks them):
 * an access to their own peripheral with a barrier at each end. */
uint64_t timer_us(void) {
  barrier();
  fence_access(ST_CLO);
  barrier();
  return m.now;
}
void timer_sleep_us(uint32_t us) {
  (void)timer_us();
  m.now += us;
}
int mbox_get_clock(uint32_t id, uint32_t *hz) {
  (void)id;
  barrier();
  fence_access(MBOX_STATUS);
  barrier();
  *hz = BASE_HZ;
  return 0;
}

/* What the model's card says of itself. */
#define CID_MID 0x03
#define CID_PSN 0x1234ABCDu
#define CID_MDT ((23u << 4) | 6u) /* June 2023 */
static const uint8_t sd_status[64] = {[0] = 0x80, [8] = 4 /* class 10 */, [14] = 0x10 /* U1 */};

/* --- the card ----------------------------------------------------------- */

static void set_csd(uint32_t r[4], uint32_t hi, uint32_t lo, uint32_t v) {
  for (uint32_t b = lo; b <= hi; b++, v >>= 1) {
    uint32_t pos = b - 8;
    if (v & 1) r[pos / 32] |= 1u << (pos % 32);
  }
}

static int pins_ready(void) {
  for (uint32_t pin = 48; pin <= 53; pin++)
    if (((m.gpfsel[pin / 10] >> (3 * (pin % 10))) & 7u) != 7u) return 0;
  for (uint32_t pin = 34; pin <= 39; pin++)
    if (((m.gpfsel[pin / 10] >> (3 * (pin % 10))) & 7u) != 0u) return 0;
  for (uint32_t pin = 49; pin <= 53; pin++)
    if (!((m.pulled_up >> pin) & 1)) return 0;
  return 1;
}

static void fail_cmd(void) { m.interrupt |= INT_ERR | INT_CTO; }
#define FAIL_CMD \
  do {           \
    fail_cmd();  \
    return;      \
  } while (0)

static void command(uint32_t cmdtm) {
  uint32_t idx = cmdtm >> 24, arg = m.arg1;
  int app = m.app;
  m.app = 0;
  memset(m.resp, 0, sizeof m.resp);
  if (m.sd_hz == 0) FAIL_CMD;
  /* In a data state the card takes nothing but CMD12 and CMD13. */
  if ((m.state == DATA_ST || m.state == RCV) && idx != 12 && idx != 13) {
    m.rejected++;
    FAIL_CMD;
  }
  if (idx == 0 && !m.saw_cmd0) {
    m.saw_cmd0 = 1;
    m.cmd0_after_clock = m.now - m.clock_on_at;
    m.pins_ok_at_cmd0 = pins_ready();
  }
  if (m.silent[idx] > 0) {
    m.silent[idx]--;
    FAIL_CMD;
  }
  switch (idx) {
  case 0: m.state = IDLE, m.acmd41 = 0; break;
  case 8: m.resp[0] = arg & 0xFFFu; break;
  case 55: m.app = 1; m.resp[0] = 1u << 5; break;
  case 41:
    if (!app) FAIL_CMD;
    m.resp[0] = 0x00FF8000u | (++m.acmd41 >= 3 ? 0xC0000000u : 0);
    if (m.acmd41 >= 3) m.state = READY;
    break;
  case 2:
    m.state = IDENT;
    set_csd(m.resp, 127, 120, CID_MID);
    set_csd(m.resp, 119, 104, ('S' << 8) | 'D');
    set_csd(m.resp, 103, 72, ('S' << 24) | ('C' << 16) | ('1' << 8) | '6');
    set_csd(m.resp, 71, 64, 'G');
    set_csd(m.resp, 63, 56, 0x80);
    set_csd(m.resp, 55, 24, CID_PSN);
    set_csd(m.resp, 19, 8, CID_MDT);
    break;
  case 3: m.state = STBY; m.rca = 0x1234; m.resp[0] = m.rca << 16; break;
  case 9:
    set_csd(m.resp, 127, 126, 1);
    set_csd(m.resp, 69, 48, SECTORS / 1024 - 1);
    break;
  case 7: m.state = TRAN; break;
  case 16: break;
  case 6: if (!app) FAIL_CMD; break;
  case 13:
    if (!app) {
      m.cmd13s++;
      m.resp[0] = (uint32_t)m.state << 9;
      break;
    }
    if (m.state != TRAN || (m.blksizecnt & 0xFFFu) != 64) FAIL_CMD; /* ACMD13 */
    m.status_read = 1, m.writing = 0, m.blocks = 1, m.block = 0, m.word = 0;
    m.state = DATA_ST;
    m.interrupt |= INT_READ_RDY;
    break;
  case 12:
    m.cmd12s++;
    if (m.state == DATA_ST || m.state == RCV) m.state = TRAN;
    break;
  case 17: case 18: case 24: case 25:
    if (m.state != TRAN) FAIL_CMD;
    m.writing = idx >= 24;
    m.blocks = (idx == 18 || idx == 25) ? m.blksizecnt >> 16 : 1;
    m.block = 0, m.word = 0, m.lba = arg, m.status_read = 0;
    if (m.lba + m.blocks > SECTORS) FAIL_CMD;
    m.state = m.writing ? RCV : DATA_ST;
    m.interrupt |= m.writing ? INT_WRITE_RDY : INT_READ_RDY;
    break;
  default: FAIL_CMD;
  }
  m.interrupt |= INT_CMD_DONE;
}

/* A block moved through DATA: the next one, the end, or an injected error. */
static void block_done(void) {
  if ((int)m.block == m.crc_at_block) {
    m.crc_at_block = -1;
    m.interrupt |= INT_ERR | INT_DCRC; /* the card stays in its data state */
    return;
  }
  m.block++, m.word = 0;
  if (m.block == m.blocks) {
    m.state = TRAN; /* auto CMD12 for a multi-block transfer */
    m.interrupt |= INT_DATA_DONE;
  } else {
    m.interrupt |= m.writing ? INT_WRITE_RDY : INT_READ_RDY;
  }
}

/* --- the registers -------------------------------------------------------- */

void fake_w32(uintptr_t a, uint32_t v) {
  fence_access(a);
  if (a >= GPIO_BASE && a < GPIO_BASE + 0x18) {
    m.gpfsel[(a - GPIO_BASE) / 4] = v;
    return;
  }
  if (a == GPIO_BASE + 0x94) {
    m.gppud = v;
    return;
  }
  if (a == GPIO_BASE + 0x98 || a == GPIO_BASE + 0x9C) {
    if (m.gppud == 2u) m.pulled_up |= (uint64_t)v << (a == GPIO_BASE + 0x98 ? 0 : 32);
    return;
  }
  if (a < EMMC_BASE || a >= EMMC_BASE + 0x100) return;
  uint32_t off = (uint32_t)(a - EMMC_BASE);
  if (off != 0x20 && m.sd_hz != 0 && m.sd_hz <= 400000u) {
    uint64_t gap = m.now - m.last_write;
    if (gap < m.min_slow_gap) m.min_slow_gap = gap;
  }
  if (off != 0x20) m.last_write = m.now;
  switch (off) {
  case 0x04: m.blksizecnt = v; break;
  case 0x08: m.arg1 = v; break;
  case 0x0C: command(v); break;
  case 0x20:
    if (m.state != RCV || m.interrupt & INT_DCRC) break;
    memcpy(&m.card[(m.lba + m.block) * 512 + m.word * 4], &v, 4);
    if (++m.word == 128) block_done();
    break;
  case 0x28: m.control0 = v; break;
  case 0x2C: {
    uint32_t was_on = m.control1 & (1u << 2);
    m.control1 = v & ~((1u << 24) | (1u << 25) | (1u << 26)); /* resets finish at once */
    if (v & (1u << 24)) m.sd_hz = 0, m.control1 = 0;
    if (m.control1 & 1u) m.control1 |= 2u; /* internal clock stable */
    if ((m.control1 & (1u << 2)) && !was_on) {
      uint32_t div = ((v >> 8) & 0xFFu) | (((v >> 6) & 3u) << 8);
      m.sd_hz = div ? BASE_HZ / (2 * div) : BASE_HZ;
      m.clock_on_at = m.now;
    } else if (!(m.control1 & (1u << 2))) {
      m.sd_hz = 0;
    }
    break;
  }
  case 0x30: m.interrupt &= ~v; break;
  default: break;
  }
}

uint32_t fake_r32(uintptr_t a) {
  fence_access(a);
  m.now++; /* a register read takes time: the driver's waits end */
  if (a >= GPIO_BASE && a < GPIO_BASE + 0x18) return m.gpfsel[(a - GPIO_BASE) / 4];
  if (a < EMMC_BASE || a >= EMMC_BASE + 0x100) return 0;
  switch ((uint32_t)(a - EMMC_BASE)) {
  case 0x10: return m.resp[0];
  case 0x14: return m.resp[1];
  case 0x18: return m.resp[2];
  case 0x1C: return m.resp[3];
  case 0x20: {
    if (m.state != DATA_ST || m.interrupt & INT_DCRC) return 0;
    uint32_t v;
    if (m.status_read) {
      memcpy(&v, &sd_status[m.word * 4], 4);
      if (++m.word == 16) block_done();
      return v;
    }
    memcpy(&v, &m.card[(m.lba + m.block) * 512 + m.word * 4], 4);
    if (++m.word == 128) block_done();
    return v;
  }
  case 0x24: return 0; /* no command or data inhibit */
  case 0x28: return m.control0;
  case 0x2C: return m.control1;
  case 0x30: return m.interrupt;
  default: return 0;
  }
}

/* --- tests ------------------------------------------------------------------ */

static void fresh(void) {
  memset(&m, 0, sizeof m);
  m.min_slow_gap = UINT64_MAX;
  m.crc_at_block = -1;
  m.now = 1000;
  /* What the GPU firmware may leave: the controller on GPIO 34-39 (the Pi
   * 3's Wi-Fi), the SD pins on another function, no pull-ups. */
  for (uint32_t pin = 34; pin <= 39; pin++) m.gpfsel[pin / 10] |= 7u << (3 * (pin % 10));
  for (uint32_t pin = 48; pin <= 53; pin++) m.gpfsel[pin / 10] |= 4u << (3 * (pin % 10));
  for (uint32_t i = 0; i < sizeof m.card; i++) m.card[i] = (uint8_t)(i * 7u + 3u);
}

static void pattern(uint8_t *b, uint32_t n, uint32_t seed) {
  for (uint32_t i = 0; i < n; i++) b[i] = (uint8_t)((i * 2654435761u + seed) >> 13);
}

static void test_pins_and_clock_before_cmd0(void) {
  fresh();
  struct emmc c = {0};
  CHECK_EQ(emmc_init(&c), 0);
  CHECK(m.saw_cmd0);
  CHECK(m.pins_ok_at_cmd0); /* 48-53 ALT3 with pull-ups on 49-53, 34-39 inputs */
  CHECK(m.cmd0_after_clock >= 1000); /* at least 1 ms of clock first */
  CHECK_EQ(c.sectors, SECTORS);
  CHECK_EQ(m.state, TRAN);
}

static void test_slow_clock_writes_are_spaced(void) {
  fresh();
  struct emmc c = {0};
  CHECK_EQ(emmc_init(&c), 0);
  CHECK(m.min_slow_gap != UINT64_MAX); /* writes at 400 kHz were seen */
  /* Two SD clocks at the model's 396.8 kHz are 5.04 us. */
  CHECK(m.min_slow_gap >= 6);
}

static void test_crc_error_mid_write_is_recovered(void) {
  fresh();
  struct emmc c = {0};
  struct pifs_bdev bd;
  CHECK_EQ(emmc_init(&c), 0);
  emmc_bdev(&c, &bd);
  static uint8_t buf[8 * 512], back[8 * 512];
  pattern(buf, sizeof buf, 1);
  m.crc_at_block = 3;
  CHECK_EQ(bd.write(bd.ctx, 100, 8, buf), 0);
  CHECK_EQ(c.errors, 1);
  CHECK(m.cmd12s >= 1);
  CHECK(m.cmd13s >= 1);
  CHECK_EQ(m.state, TRAN);
  CHECK(memcmp(&m.card[100 * 512], buf, sizeof buf) == 0);
  /* The card takes commands again: a read of the same blocks. */
  CHECK_EQ(bd.read(bd.ctx, 100, 8, back), 0);
  CHECK(memcmp(back, buf, sizeof buf) == 0);
}

static void test_crc_error_mid_read_is_recovered(void) {
  fresh();
  struct emmc c = {0};
  struct pifs_bdev bd;
  CHECK_EQ(emmc_init(&c), 0);
  emmc_bdev(&c, &bd);
  static uint8_t back[16 * 512];
  m.crc_at_block = 9;
  CHECK_EQ(bd.read(bd.ctx, 500, 16, back), 0);
  CHECK_EQ(c.errors, 1);
  CHECK(memcmp(back, &m.card[500 * 512], sizeof back) == 0);
  CHECK_EQ(m.state, TRAN);
}

static void test_init_is_tried_again(void) {
  fresh();
  struct emmc c = {0};
  m.silent[0] = 1; /* the first CMD0 (of the first try) goes unanswered */
  CHECK_EQ(emmc_init(&c), 0);
  CHECK_EQ(c.init_step, 0);
  CHECK_EQ(c.sectors, SECTORS);
  fresh();
  m.silent[0] = 100; /* a card that never answers: the step is reported */
  CHECK_EQ(emmc_init(&c), -3);
  CHECK_EQ(c.init_step, -3);
  CHECK_EQ(c.init_tries, 3);
}

/* A command that times out once, at any step of the initialisation: the
 * initialisation is tried again and succeeds; one that always times out is
 * reported with its step. */
static void test_command_timeouts_at_every_step(void) {
  static const struct {
    int cmd, step;
  } steps[] = {{8, 0}, {55, -4}, {41, -4}, {2, -6}, {3, -7}, {9, -8}, {7, -9}};
  for (uint32_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
    fresh();
    struct emmc c = {0};
    m.silent[steps[i].cmd] = 1;
    CHECK_EQ(emmc_init(&c), 0);
    CHECK_EQ(c.sectors, SECTORS);
    CHECK_EQ(m.state, TRAN);
    if (steps[i].step == 0) continue; /* CMD8 unanswered: a version 1 card, no retry needed */
    CHECK_EQ(c.init_tries, 1);
    fresh();
    m.silent[steps[i].cmd] = 1000;
    CHECK_EQ(emmc_init(&c), steps[i].step);
    CHECK_EQ(c.init_step, steps[i].step);
    CHECK_EQ(c.init_tries, 3);
  }
}

/* A read or write command that times out is retried; the bytes are right. */
static void test_data_command_timeouts_are_retried(void) {
  fresh();
  struct emmc c = {0};
  struct pifs_bdev bd;
  CHECK_EQ(emmc_init(&c), 0);
  emmc_bdev(&c, &bd);
  static uint8_t buf[4 * 512], back[4 * 512];
  pattern(buf, sizeof buf, 7);
  m.silent[25] = 2;
  CHECK_EQ(bd.write(bd.ctx, 40, 4, buf), 0);
  CHECK_EQ(c.errors, 2);
  m.silent[17] = 1;
  CHECK_EQ(bd.read(bd.ctx, 41, 1, back), 0);
  CHECK(memcmp(back, buf + 512, 512) == 0);
  CHECK_EQ(c.errors, 3);
  m.silent[18] = 3; /* three timeouts in a row: the error reaches the core */
  CHECK_EQ(bd.read(bd.ctx, 40, 4, back), PIFS_EIO);
  CHECK_EQ(bd.read(bd.ctx, 40, 4, back), 0); /* and the card still works */
  CHECK(memcmp(back, buf, sizeof buf) == 0);
}

static void test_card_identity_and_speed_class(void) {
  fresh();
  struct emmc c = {0};
  CHECK_EQ(emmc_init(&c), 0);
  CHECK_EQ(c.info.mid, CID_MID);
  CHECK(memcmp(c.info.oid, "SD", 2) == 0);
  CHECK(memcmp(c.info.pnm, "SC16G", 5) == 0);
  CHECK_EQ(c.info.prv, 0x80);
  CHECK_EQ(c.info.psn, CID_PSN);
  CHECK_EQ(c.info.mdt, CID_MDT);
  CHECK_EQ(c.info.bytes, (uint64_t)SECTORS * 512u);
  CHECK_EQ(c.info.speed_class, 4);
  CHECK_EQ(c.info.uhs_grade, 1);
  CHECK_EQ(c.info.bus_width, 4);
  CHECK_EQ(c.info.high_capacity, 1);
  CHECK_EQ(c.info.clock_hz, 25000000u); /* 50 MHz / 2 */
  CHECK_EQ(m.state, TRAN);
  /* A card that does not answer ACMD13 still works; its class is unknown. */
  fresh();
  m.silent[13] = 1000;
  CHECK_EQ(emmc_init(&c), 0);
  CHECK_EQ(c.info.speed_class, 0xFF);
  CHECK_EQ(c.sectors, SECTORS);
}

/* The Zero's rule between peripherals (fence.h): GPIO, timer, mailbox and
 * the controller, through an initialisation, a write, a read and a
 * recovered CRC error. */
static void test_peripheral_switches_are_fenced(void) {
  fresh();
  struct emmc c = {0};
  struct pifs_bdev bd;
  fence_begin();
  CHECK_EQ(emmc_init(&c), 0);
  CHECK_EQ(fence_end(), 0);
  CHECK(fence.accesses > 100);
  emmc_bdev(&c, &bd);
  static uint8_t buf[8 * 512];
  pattern(buf, sizeof buf, 3);
  m.crc_at_block = 2;
  fence_begin();
  CHECK_EQ(bd.write(bd.ctx, 8, 8, buf), 0);
  CHECK_EQ(fence_end(), 0);
  fence_begin();
  CHECK_EQ(bd.read(bd.ctx, 8, 8, buf), 0);
  CHECK_EQ(fence_end(), 0);
}

int main(void) {
  RUN(test_pins_and_clock_before_cmd0);
  RUN(test_slow_clock_writes_are_spaced);
  RUN(test_crc_error_mid_write_is_recovered);
  RUN(test_crc_error_mid_read_is_recovered);
  RUN(test_init_is_tried_again);
  RUN(test_command_timeouts_at_every_step);
  RUN(test_data_command_timeouts_are_retried);
  RUN(test_card_identity_and_speed_class);
  RUN(test_peripheral_switches_are_fenced);
  return CHECK_DONE();
}
