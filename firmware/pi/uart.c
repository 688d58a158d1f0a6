/* PL011 UART0 on GPIO 14/15: 8N1, FIFOs on. Receive is interrupt-driven:
 * the handler empties the FIFO into a ring buffer, so no byte is lost while
 * the main loop is busy writing the card. Transmit polls the FIFO. */
#include "board.h"

#define DR (UART0 + 0x00)
#define FR (UART0 + 0x18)
#define IBRD (UART0 + 0x24)
#define FBRD (UART0 + 0x28)
#define LCRH (UART0 + 0x2C)
#define CR (UART0 + 0x30)
#define IFLS (UART0 + 0x34)
#define IMSC (UART0 + 0x38)
#define ICR (UART0 + 0x44)

#define FR_RXFE (1u << 4)
#define FR_TXFF (1u << 5)
#define FR_BUSY (1u << 3)
#define INT_RX (1u << 4)
#define INT_RT (1u << 6)
#define INT_OE (1u << 10)

/* The ring holds twice the request window the node announces, so a host that
 * keeps to the window can never overflow it. Power of two. */
#define RING 131072u
static uint8_t ring[RING];
static volatile uint32_t head, tail; /* head: written by the IRQ; tail: by the main loop */
volatile uint32_t uart_overruns;

void uart_init(uint32_t baud, uint32_t clock_hz) {
  barrier();
  w32(CR, 0);
  barrier();
  /* GPIO 14 and 15 to ALT0 (TXD0/RXD0). TXD without a pull; RXD pulled up,
   * so that a line with no adapter on it (or a loose wire) reads idle, not
   * noise the node would take for frames. */
  uint32_t sel = r32(GPFSEL1);
  sel &= ~((7u << 12) | (7u << 15));
  sel |= (4u << 12) | (4u << 15);
  w32(GPFSEL1, sel);
  const uint32_t pulls[2][2] = {{14, 0u}, {15, 2u}}; /* pin, GPPUD: 0 off, 2 up */
  for (int i = 0; i < 2; i++) {
    w32(GPPUD, pulls[i][1]);
    timer_sleep_us(5);
    w32(GPPUDCLK0, 1u << pulls[i][0]);
    timer_sleep_us(5);
    w32(GPPUD, 0);
    w32(GPPUDCLK0, 0);
  }
  barrier();
  /* divisor = clock / (16 · baud) in 16.6 fixed point, rounded */
  uint32_t div64 = (uint32_t)(((uint64_t)clock_hz * 4 + baud / 2) / baud);
  w32(ICR, 0x7FF & ~(INT_RX | INT_RT)); /* reading the FIFO clears those (uart_irq) */
  w32(IBRD, div64 >> 6);
  w32(FBRD, div64 & 63);
  w32(LCRH, (3u << 5) | (1u << 4)); /* 8 bits, FIFO on */
  w32(IFLS, 2u << 3);               /* receive interrupt at 1/2 full */
  w32(IMSC, INT_RX | INT_RT | INT_OE);
  w32(CR, (1u << 0) | (1u << 8) | (1u << 9)); /* enable, TX, RX */
  /* Bytes left in the FIFO from before (a bootloader that handed over while
   * the host was talking) are dropped: the receive interrupt is raised when
   * a byte reaches an empty FIFO, and a FIFO that never empties would never
   * raise it. */
  while (!(r32(FR) & FR_RXFE)) (void)r32(DR);
  barrier();
  w32(IRQ_EN2, IRQ2_UART0);
  barrier();
}

void uart_irq(void) {
  barrier();
  uint32_t h = head;
  while (!(r32(FR) & FR_RXFE)) {
    uint32_t v = r32(DR);
    if (v & (1u << 11)) uart_overruns++; /* the FIFO overran before this byte */
    if (h - tail == RING) {
      uart_overruns++;
      continue;
    }
    ring[h & (RING - 1)] = (uint8_t)v;
    h++;
  }
  head = h;
  /* Only the overrun flag is cleared here: reading the FIFO clears the
   * receive and timeout interrupts. Clearing them too would lose one raised
   * by a byte that came after the loop's last read, and the FIFO would then
   * fill without another interrupt. */
  w32(ICR, INT_OE);
  barrier();
}

uint32_t uart_pending(void) { return head - tail; }

int uart_getc_poll(void) {
  barrier();
  int c = (r32(FR) & FR_RXFE) ? -1 : (int)(r32(DR) & 0xFF);
  barrier();
  return c;
}

void uart_drain(void) {
  barrier();
  while (r32(FR) & FR_BUSY) {
  }
  barrier();
}

uint32_t uart_read(uint8_t *buf, uint32_t max) {
  uint32_t t = tail, n = head - t;
  if (n > max) n = max;
  for (uint32_t i = 0; i < n; i++) buf[i] = ring[(t + i) & (RING - 1)];
  tail = t + n;
  return n;
}

int uart_write(void *io, const void *buf, uint32_t n) {
  (void)io;
  const uint8_t *p = buf;
  barrier();
  while (n--) {
    while (r32(FR) & FR_TXFF) {
    }
    w32(DR, *p++);
  }
  barrier();
  return 0;
}

void uart_puts(const char *s) {
  uint32_t n = 0;
  while (s[n]) n++;
  uart_write(0, s, n);
}
