/* A panic stops the firmware cleanly: interrupts off, the reason and the
 * place written to the UART by polling (the receive ring and its interrupt
 * may be what broke), then the CPU sleeps for good. The host sees a line
 * "PANIC file:line: message" between frames. */
#include "board.h"

void put_hex(uint64_t v) {
  char s[19] = "0x";
  for (int i = 0; i < 16; i++) s[2 + i] = "0123456789abcdef"[(v >> (60 - 4 * i)) & 15];
  s[18] = 0;
  uart_puts(s);
}

static void put_dec(uint32_t v) {
  char s[11];
  int i = 10;
  s[i] = 0;
  do s[--i] = (char)('0' + v % 10); while ((v /= 10) && i);
  uart_puts(s + i);
}

_Noreturn void pi_panic(const char *file, int line, const char *msg) {
  irq_off();
  uart_write(0, "\0", 1); /* a frame delimiter: the host's parser drops what came before */
  uart_puts("PANIC ");
  uart_puts(file);
  uart_puts(":");
  put_dec((uint32_t)line);
  uart_puts(": ");
  uart_puts(msg);
  uart_puts("\r\n");
  uart_write(0, "\0", 1);
  /* Every interrupt source off at the controller: a pending one, even
   * masked, would end each WFI at once and the CPU would spin. */
  w32(IRQ_DIS1, 0xFFFFFFFFu);
  w32(IRQ_DIS2, 0xFFFFFFFFu);
  for (;;) wait_for_irq();
}

/* Called by the vector code for anything but an IRQ: a CPU exception. */
_Noreturn void exception_handler(uint64_t kind, uint64_t syndrome, uint64_t addr, uint64_t fault) {
  irq_off();
  uart_puts("\r\nexception ");
  put_hex(kind);
  uart_puts(" syndrome ");
  put_hex(syndrome);
  uart_puts(" at ");
  put_hex(addr);
  uart_puts(" address ");
  put_hex(fault);
  pi_panic(__FILE__, __LINE__, "CPU exception");
}
