/* Registers of the Raspberry Pi boards the firmware runs on. One source for
 * both: BCM2837 (Pi 3, AArch64) and BCM2835 (Pi Zero/1, ARMv6) differ here
 * only in where the peripherals are and in a few CPU instructions. */
#ifndef PI_BOARD_H
#define PI_BOARD_H

#include <stdint.h>

/* PI_FAKE_REGS: the same driver code built on the host against a model of
 * the registers (firmware/tests/test_emmc.c); PI_FAKE_PI3 makes it the Pi 3. */
#if defined(__aarch64__) || defined(PI_FAKE_PI3)
#define PI3 1
#define PERIPH 0x3F000000u
#define BOARD_NAME "raspi3b"
#define MBOX_BUS 0xC0000000u /* the VideoCore sees RAM uncached here */
#else
#define PERIPH 0x20000000u
#define BOARD_NAME "raspi0"
#define MBOX_BUS 0x40000000u
#endif

/* system timer: 1 MHz free-running counter and four compare registers */
#define ST_CS (PERIPH + 0x3000)
#define ST_CLO (PERIPH + 0x3004)
#define ST_CHI (PERIPH + 0x3008)
#define ST_C1 (PERIPH + 0x3010)

/* ARM interrupt controller */
#define IRQ_PEND1 (PERIPH + 0xB204)
#define IRQ_PEND2 (PERIPH + 0xB208)
#define IRQ_EN1 (PERIPH + 0xB210)
#define IRQ_EN2 (PERIPH + 0xB214)
#define IRQ_DIS1 (PERIPH + 0xB21C)
#define IRQ_DIS2 (PERIPH + 0xB220)
#define IRQ1_TIMER1 (1u << 1)   /* system timer compare 1 (0 and 2 are the GPU's) */
#define IRQ2_UART0 (1u << 25)   /* PL011: IRQ 57 */

/* mailbox 0 */
#define MBOX_READ (PERIPH + 0xB880)
#define MBOX_STATUS (PERIPH + 0xB898)
#define MBOX_WRITE (PERIPH + 0xB8A0)

/* GPIO */
#define GPFSEL0 (PERIPH + 0x200000) /* function selects: GPFSELn covers pins 10n..10n+9 */
#define GPFSEL1 (PERIPH + 0x200004)
#define GPPUD (PERIPH + 0x200094)
#define GPPUDCLK0 (PERIPH + 0x200098)
#define GPPUDCLK1 (PERIPH + 0x20009C)

/* PL011 UART0 */
#define UART0 (PERIPH + 0x201000)

/* EMMC (SD host controller, SDHCI-like) */
#define EMMC (PERIPH + 0x300000)

#if defined(PI_FAKE_REGS)
void fake_w32(uintptr_t a, uint32_t v);
uint32_t fake_r32(uintptr_t a);
static inline void w32(uintptr_t a, uint32_t v) { fake_w32(a, v); }
static inline uint32_t r32(uintptr_t a) { return fake_r32(a); }
#else
static inline void w32(uintptr_t a, uint32_t v) { *(volatile uint32_t *)a = v; }
static inline uint32_t r32(uintptr_t a) { return *(volatile uint32_t *)a; }
#endif

/* A data memory barrier. The BCM2835 datasheet (1.3, "Peripheral access
 * precautions for correct memory ordering"): reads from two different
 * peripherals can come back out of order, so a barrier goes before the first
 * write to a peripheral and after the last read from it, and at the entry
 * and exit of an interrupt handler, which may break into a sequence of
 * accesses to another peripheral. Every driver function here begins and
 * ends with one (firmware/tests/test_barriers.c checks each switch). */
#if defined(PI_FAKE_REGS)
void fake_barrier(void);
#endif
static inline void barrier(void) {
#if defined(PI_FAKE_REGS)
  fake_barrier();
#elif defined(__aarch64__)
  __asm__ volatile("dsb sy" ::: "memory");
#else
  __asm__ volatile("mcr p15, 0, %0, c7, c10, 4" ::"r"(0) : "memory");
#endif
}

static inline void irq_off(void) {
#if defined(__aarch64__)
  __asm__ volatile("msr daifset, #2" ::: "memory");
#else
  __asm__ volatile("cpsid i" ::: "memory");
#endif
}

static inline void irq_on(void) {
#if defined(__aarch64__)
  __asm__ volatile("msr daifclr, #2" ::: "memory");
#else
  __asm__ volatile("cpsie i" ::: "memory");
#endif
}

/* Sleeps until an interrupt is pending, even one masked right now: called
 * with interrupts off, so none can slip in between a check and the sleep. */
static inline void wait_for_irq(void) {
#if defined(__aarch64__)
  __asm__ volatile("dsb sy\n wfi" ::: "memory");
#else
  __asm__ volatile("mcr p15, 0, %0, c7, c0, 4" ::"r"(0) : "memory");
#endif
}

/* pi/timer.c */
uint64_t timer_us(void);
void timer_sleep_us(uint32_t us);
void timer_wake_in(uint32_t us); /* an interrupt after us (wakes wait_for_irq) */
void timer_irq(void);

/* pi/irq.c: called by the vector code */
void irq_handler(void);

/* pi/uart.c */
void uart_init(uint32_t baud, uint32_t clock_hz);
void uart_irq(void);
int uart_getc_poll(void); /* a byte from the FIFO, or -1 (the bootloader: no interrupts) */
void uart_drain(void);    /* waits until every byte written has left */
uint32_t uart_read(uint8_t *buf, uint32_t max); /* from the receive ring */
uint32_t uart_pending(void);
int uart_write(void *io, const void *buf, uint32_t n);
void uart_puts(const char *s);
extern volatile uint32_t uart_overruns; /* bytes lost: ring full or FIFO overrun */

/* pi/mbox.c: property tags, 0 on success */
int mbox_board_revision(uint32_t *rev);
int mbox_board_serial(uint64_t *serial);
int mbox_arm_memory(uint32_t *base, uint32_t *size);
int mbox_set_clock(uint32_t clock_id, uint32_t hz, uint32_t *got);
int mbox_get_clock(uint32_t clock_id, uint32_t *hz);
#define CLOCK_EMMC 1
#define CLOCK_UART 2

/* pi/panic.c */
_Noreturn void pi_panic(const char *file, int line, const char *msg);
#define PANIC(msg) pi_panic(__FILE__, __LINE__, msg)
void put_hex(uint64_t v);
void heap_init(uintptr_t start, uintptr_t end);

#endif
