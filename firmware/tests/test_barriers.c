/* The Pi Zero's memory-ordering rule (fence.h) for the drivers the node runs
 * between card accesses: the interrupt handler, the system timer and the
 * UART (pi/irq.c, timer.c, uart.c), built on the host against registers that
 * log which peripheral each access goes to. The SD driver is checked the
 * same way in test_emmc.c. */
#include <stdint.h>
#include <string.h>

#include "board.h"
#include "check.h"
#include "fence.h"

static struct {
  uint64_t clock;
  const uint8_t *rx; /* bytes waiting in the receive FIFO */
  uint32_t rx_left;
  int timer_match;
  uint32_t tx;       /* bytes written to DR */
  uint32_t irq_en1, irq_dis1, irq_en2;
} r;

void fake_w32(uintptr_t a, uint32_t v) {
  fence_access(a);
  if (a == UART0) r.tx++;
  if (a == ST_CS && (v & 2u)) r.timer_match = 0;
  if (a == IRQ_EN1) r.irq_en1 |= v;
  if (a == IRQ_DIS1) r.irq_dis1 |= v;
  if (a == IRQ_EN2) r.irq_en2 |= v;
}

uint32_t fake_r32(uintptr_t a) {
  fence_access(a);
  if (a == ST_CLO) return (uint32_t)(r.clock += 3);
  if (a == ST_CHI) return (uint32_t)(r.clock >> 32);
  if (a == UART0 + 0x18) return r.rx_left ? 0 : 1u << 4; /* FR: RXFE when empty; never busy or full */
  if (a == UART0) {
    if (!r.rx_left) return 0;
    r.rx_left--;
    return *r.rx++;
  }
  if (a == IRQ_PEND2) return r.rx_left ? IRQ2_UART0 : 0;
  if (a == IRQ_PEND1) return r.timer_match ? IRQ1_TIMER1 : 0;
  return 0;
}

static void test_interrupt_handler_is_fenced(void) {
  memset(&r, 0, sizeof r);
  uart_init(115200, 48000000);
  static const uint8_t bytes[] = "hello, pi";
  r.rx = bytes, r.rx_left = sizeof bytes;
  r.timer_match = 1;
  uint32_t before = uart_pending();
  fence_begin();
  irq_handler(); /* both sources pending: UART then timer */
  CHECK_EQ(fence_end(), 0);
  CHECK_EQ(uart_pending() - before, sizeof bytes); /* the handler did its work */
  CHECK_EQ(r.timer_match, 0);
  CHECK(r.irq_dis1 & IRQ1_TIMER1);
  uint8_t back[16];
  CHECK_EQ(uart_read(back, sizeof back), sizeof bytes);
  CHECK(memcmp(back, bytes, sizeof bytes) == 0);
}

static void test_uart_calls_are_fenced(void) {
  memset(&r, 0, sizeof r);
  fence_begin();
  uart_init(115200, 48000000); /* GPIO, timer (the pull-ups' waits), UART, interrupt controller */
  CHECK_EQ(fence_end(), 0);
  CHECK(r.irq_en2 & IRQ2_UART0);
  fence_begin();
  CHECK_EQ(uart_write(0, "abc", 3), 0);
  CHECK_EQ(fence_end(), 0);
  CHECK_EQ(r.tx, 3);
  static const uint8_t one[] = {0x5a};
  r.rx = one, r.rx_left = 1;
  fence_begin();
  CHECK_EQ(uart_getc_poll(), 0x5a);
  CHECK_EQ(fence_end(), 0);
  fence_begin();
  uart_drain();
  CHECK_EQ(fence_end(), 0);
}

static void test_timer_calls_are_fenced(void) {
  memset(&r, 0, sizeof r);
  fence_begin();
  uint64_t t = timer_us();
  CHECK_EQ(fence_end(), 0);
  CHECK(t > 0);
  fence_begin();
  timer_wake_in(100);
  CHECK_EQ(fence_end(), 0);
  CHECK(r.irq_en1 & IRQ1_TIMER1);
  fence_begin();
  timer_sleep_us(50);
  CHECK_EQ(fence_end(), 0);
  CHECK(r.clock >= 50);
}

/* The checker itself: an access to two peripherals with no barrier between
 * is counted (so that the tests above can fail). */
static void test_the_checker_sees_a_missing_barrier(void) {
  fence_begin();
  barrier();
  (void)fake_r32(ST_CLO);
  (void)fake_r32(UART0 + 0x18);
  barrier();
  CHECK_EQ(fence_end(), 1);
  CHECK_EQ(fence.first_bad, UART0 + 0x18);
  fence_begin();
  (void)fake_r32(ST_CLO); /* no barrier on entry, none on return */
  CHECK_EQ(fence_end(), 2);
}

int main(void) {
  RUN(test_interrupt_handler_is_fenced);
  RUN(test_uart_calls_are_fenced);
  RUN(test_timer_calls_are_fenced);
  RUN(test_the_checker_sees_a_missing_barrier);
  return CHECK_DONE();
}
