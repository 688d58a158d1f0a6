/* The BCM2835's rule for peripheral accesses (datasheet 1.3): a barrier
 * between the last access to one peripheral and the first to another, and
 * at both ends of an interrupt handler. The register models of the driver
 * tests call fence_access for every register read or write; barrier() calls
 * fake_barrier. A call bracketed by fence_begin and fence_end counts as
 * coming from, and returning to, code that used some other peripheral: its
 * first access and its return need a barrier too. */
#ifndef PI_TEST_FENCE_H
#define PI_TEST_FENCE_H

#include <stdint.h>

#include "board.h"

enum { P_CALLER = 100 };

static struct {
  int last;          /* peripheral of the last access */
  int fenced;        /* a barrier since then */
  uint32_t unfenced; /* switches without a barrier between */
  uint32_t accesses;
  uintptr_t first_bad; /* the register of the first unfenced switch */
} fence;

/* Which peripheral a register belongs to. */
static inline int fence_periph(uintptr_t a) {
  uint32_t off = (uint32_t)(a - PERIPH);
  if (off >= 0xB200 && off < 0xB400) return 0xB2; /* interrupt controller */
  if (off >= 0xB880 && off < 0xB8C0) return 0xB8; /* mailbox */
  return (int)(off >> 12);                        /* GPIO, UART0, EMMC, system timer, ... */
}

void fake_barrier(void) { fence.fenced = 1; }

static inline void fence_switch(int p, uintptr_t a) {
  if (p != fence.last && !fence.fenced) {
    if (!fence.unfenced) fence.first_bad = a;
    fence.unfenced++;
  }
  fence.last = p;
  fence.fenced = 0;
}

static inline void fence_access(uintptr_t a) {
  fence.accesses++;
  fence_switch(fence_periph(a), a);
}

static inline void fence_begin(void) {
  fence.last = P_CALLER;
  fence.fenced = 0;
  fence.unfenced = 0;
  fence.accesses = 0;
  fence.first_bad = 0;
}

/* Unfenced switches since fence_begin, the return to the caller included. */
static inline uint32_t fence_end(void) {
  if (fence.accesses) fence_switch(P_CALLER, 0);
  return fence.unfenced;
}

#endif
