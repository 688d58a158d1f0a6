/* Interrupt dispatch: the vector code saves the registers and calls this. On
 * the Pi 3 the BCM2836 local controller routes every GPU interrupt to core 0's
 * IRQ line by default, so the same ARM controller registers serve both boards. */
#include "board.h"

void irq_handler(void) {
  barrier(); /* the interrupt may have come between two accesses of the code it broke into */
  uint32_t pend2 = r32(IRQ_PEND2), pend1 = r32(IRQ_PEND1);
  barrier();
  if (pend2 & IRQ2_UART0) uart_irq();
  if (pend1 & IRQ1_TIMER1) timer_irq();
  barrier();
}
