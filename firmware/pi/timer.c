/* The BCM283x system timer: a 64-bit counter at 1 MHz, read as two 32-bit
 * halves, and compare register 1 (0 and 2 belong to the GPU) to wake the
 * CPU from wait_for_irq after a given time. */
#include "board.h"

/* Each function here is fenced by barriers at both ends (board.h): the
 * drivers poll the timer between accesses to their own peripheral. */
uint64_t timer_us(void) {
  barrier();
  uint32_t hi = r32(ST_CHI), lo = r32(ST_CLO);
  uint32_t hi2 = r32(ST_CHI);
  if (hi2 != hi) lo = r32(ST_CLO), hi = hi2; /* the low half wrapped between reads */
  barrier();
  return ((uint64_t)hi << 32) | lo;
}

void timer_sleep_us(uint32_t us) {
  uint64_t end = timer_us() + us;
  while (timer_us() < end) {
  }
}

void timer_wake_in(uint32_t us) {
  if (us < 10) us = 10;
  barrier();
  w32(ST_C1, r32(ST_CLO) + us);
  w32(ST_CS, 1u << 1); /* clear an old match */
  barrier();
  w32(IRQ_EN1, IRQ1_TIMER1);
  barrier();
}

void timer_irq(void) {
  barrier();
  w32(ST_CS, 1u << 1);
  barrier();
  w32(IRQ_DIS1, IRQ1_TIMER1); /* one-shot: armed again by the next timer_wake_in */
  barrier();
}
