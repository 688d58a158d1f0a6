/* The node firmware: the pifs node core on a Raspberry Pi. The card is the
 * SD card on the EMMC controller, the byte stream the PL011 UART; the core
 * is the same code as the hosted node's. The CPU sleeps whenever no byte is
 * waiting, woken by the UART's interrupt or, while a frame is incomplete, by
 * the system timer after PIFS_IDLE_MS. */
#include "board.h"
#include "emmc.h"
#include "node.h"
#include "sha256.h"

#define BAUD 115200u
#define UART_CLOCK 48000000u
/* Request bytes the host may have in flight: half the receive ring. */
#define WINDOW 65536u

extern uint8_t __heap_start[];

static struct pifs_node node;
static struct emmc card;
static uint8_t buf[4096];

#define PM_RSTC (PERIPH + 0x10001C)
#define PM_WDOG (PERIPH + 0x100024)
#define PM_PASSWORD 0x5A000000u

/* A watchdog reset of the whole board: the Pi boots again from its card,
 * into the bootloader. */
static void reboot(void) {
  uart_drain();
  irq_off();
  w32(PM_WDOG, PM_PASSWORD | 16);                                     /* 16 ticks of ~16 us */
  w32(PM_RSTC, PM_PASSWORD | (r32(PM_RSTC) & ~0x30u) | 0x20u); /* full reset */
  for (;;) wait_for_irq();
}

/* The CPU's caches and checks, as its system control register says. */
static uint32_t cpu_flags(void) {
  uint64_t sctlr;
  uint32_t f = 0;
#if defined(__aarch64__)
  __asm__ volatile("mrs %0, sctlr_el1" : "=r"(sctlr));
  f |= PIFS_CPU_BRANCH_PREDICT; /* the Cortex-A53's cannot be turned off */
#else
  uint32_t v;
  __asm__ volatile("mrc p15, 0, %0, c1, c0, 0" : "=r"(v));
  sctlr = v;
  if ((sctlr >> 11) & 1) f |= PIFS_CPU_BRANCH_PREDICT; /* Z */
#endif
  if ((sctlr >> 12) & 1) f |= PIFS_CPU_ICACHE;
  if ((sctlr >> 2) & 1) f |= PIFS_CPU_DCACHE;
  if ((sctlr >> 1) & 1) f |= PIFS_CPU_ALIGN_CHECK;
  return f;
}

/* How fast this Pi hashes: SHA-256 over `buf` for about 50 ms, in kB/s
 * (bytes per ms). Every chunk the node stores is hashed once on its way in. */
static uint32_t sha256_kbps(void) {
  struct sha256 s;
  uint8_t out[32];
  for (uint32_t i = 0; i < sizeof buf; i++) buf[i] = (uint8_t)(i * 131u);
  sha256_init(&s);
  uint64_t start = timer_us(), bytes = 0, us;
  do {
    sha256_update(&s, buf, sizeof buf);
    bytes += sizeof buf;
    us = timer_us() - start;
  } while (us < 50000);
  sha256_final(&s, out);
  return (uint32_t)(bytes * 1000u / us);
}

void pi_main(void) {
  uint32_t clock = UART_CLOCK, got, rev = 0, mem_base = 0, mem_size = 0;
  if (mbox_set_clock(CLOCK_UART, UART_CLOCK, &got) == 0 && got) clock = got;
  uart_init(BAUD, clock);
  uint64_t serial = 0;
  mbox_board_serial(&serial);
  mbox_board_revision(&rev);
  if (mbox_arm_memory(&mem_base, &mem_size) || mem_size < (64u << 20)) mem_size = 64u << 20;
  /* the heap: from the end of the image to 1 MiB below the top of ARM RAM */
  heap_init((uintptr_t)__heap_start, (uintptr_t)mem_base + mem_size - (1u << 20));

  struct pifs_bdev bd = {0};
  int card_err = emmc_init(&card);
  if (card_err == 0) emmc_bdev(&card, &bd);
  struct pifs_platform pl = {.board = BOARD_NAME,
                             .serial = serial,
                             .window = WINDOW,
                             .write = uart_write,
                             .revision = rev,
                             .mem_bytes = mem_size,
                             .reboot = reboot,
                             .card_init_step = card.init_step,
                             .card_init_tries = card.init_tries,
                             .card = card.info,
                             .cpu_flags = cpu_flags(),
                             .sha256_kbps = sha256_kbps()};
  node_init(&node, &bd, &pl);
  irq_on();

  uint64_t last_rx = timer_us();
  for (;;) {
    irq_off();
    if (!uart_pending()) {
      if (node_partial(&node)) {
        uint64_t idle = timer_us() - last_rx;
        if (idle >= PIFS_IDLE_MS * 1000u) {
          irq_on();
          node_idle(&node);
          continue;
        }
        timer_wake_in((uint32_t)(PIFS_IDLE_MS * 1000u - idle));
      }
      wait_for_irq();
      irq_on();
      continue;
    }
    irq_on();
    uint32_t n = uart_read(buf, sizeof buf);
    last_rx = timer_us();
    node_feed(&node, buf, n);
  }
}
