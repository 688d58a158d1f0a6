/* A test image, not firmware: it starts like the node firmware, then
 * panics on purpose, so the tests can watch a panic report file:line over
 * the UART and the Pi stop cleanly (tests/qemu/cases.ts). */
#include "board.h"

void pi_main(void) {
  uint32_t clock = 48000000u, hz;
  if (mbox_set_clock(CLOCK_UART, clock, &hz) == 0 && hz) clock = hz;
  uart_init(115200, clock);
  PANIC("panic test image: stopping on purpose");
}
