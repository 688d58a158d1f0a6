/* The Pi's UART set-up (pi/uart.c), built on the host against a model of
 * the GPIO registers: TXD0 and RXD0 on GPIO 14 and 15 (ALT0), RXD pulled
 * up so that a floating line is quiet, TXD without a pull. */
#include <stdint.h>
#include <string.h>

#include "board.h"
#include "check.h"
#include "fence.h"

#define GPIO_BASE (PERIPH + 0x200000)

static uint32_t gpfsel[6], gppud;
static int pull[54] = {0}; /* last GPPUD value clocked into each pin; -1: never */

uint64_t timer_us(void) { return 0; }
void timer_sleep_us(uint32_t us) { (void)us; }

void fake_w32(uintptr_t a, uint32_t v) {
  if (a >= GPIO_BASE && a < GPIO_BASE + 0x18) gpfsel[(a - GPIO_BASE) / 4] = v;
  if (a == GPIO_BASE + 0x94) gppud = v;
  if (a == GPIO_BASE + 0x98)
    for (int pin = 0; pin < 32; pin++)
      if ((v >> pin) & 1) pull[pin] = (int)gppud;
}

uint32_t fake_r32(uintptr_t a) {
  if (a >= GPIO_BASE && a < GPIO_BASE + 0x18) return gpfsel[(a - GPIO_BASE) / 4];
  if (a == UART0 + 0x18) return 1u << 4; /* FR: receive FIFO empty */
  return 0;
}

static void test_rx_pulled_up_tx_not(void) {
  for (int i = 0; i < 54; i++) pull[i] = -1;
  gpfsel[1] = 0xFFFFFFFFu; /* whatever the firmware left */
  uart_init(115200, 48000000);
  CHECK_EQ((gpfsel[1] >> 12) & 7u, 4); /* GPIO 14: ALT0, TXD0 */
  CHECK_EQ((gpfsel[1] >> 15) & 7u, 4); /* GPIO 15: ALT0, RXD0 */
  CHECK_EQ(pull[15], 2);               /* RXD: pull-up */
  CHECK_EQ(pull[14], 0);               /* TXD: no pull */
  CHECK_EQ(pull[13], -1);              /* nothing else touched */
  CHECK_EQ(gppud, 0);                  /* the control is left cleared */
}

int main(void) {
  RUN(test_rx_pulled_up_tx_not);
  return CHECK_DONE();
}
