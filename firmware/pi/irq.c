/* Interrupt dispatch: the vector code saves the registers and calls this. On
 * the Pi 3 the BCM2836 local controller routes every GPU interrupt to core 0's
 * IRQ line by default, so the same ARM controller registers serve both boards. */
#include "board.h"

void irq_handler(void) {
  if (r32(IRQ_PEND2) & IRQ2_UART0) uart_irq();
  if (r32(IRQ_PEND1) & IRQ1_TIMER1) timer_irq();
}
