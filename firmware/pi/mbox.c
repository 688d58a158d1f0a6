/* The VideoCore mailbox property interface (channel 8): board revision and
 * serial number, the ARM's share of RAM, and clock rates. The buffer is
 * passed by its bus address; the data cache is off, so nothing to flush. */
#include "board.h"

#define MBOX_FULL 0x80000000u
#define MBOX_EMPTY 0x40000000u
#define CH_PROP 8u

static volatile uint32_t __attribute__((aligned(16))) mb[36];

/* One property tag: id, request words in, up to `resp` words out. */
static int mbox_call(uint32_t tag, const uint32_t *in, uint32_t nin, uint32_t *out, uint32_t nout) {
  uint32_t words = nin > nout ? nin : nout;
  uint32_t i = 0;
  mb[i++] = 0;          /* total size, below */
  mb[i++] = 0;          /* request */
  mb[i++] = tag;
  mb[i++] = words * 4;  /* value buffer size */
  mb[i++] = 0;          /* request code */
  for (uint32_t k = 0; k < words; k++) mb[i++] = k < nin ? in[k] : 0;
  mb[i++] = 0;          /* end tag */
  mb[0] = i * 4;
  barrier();
  uint32_t addr = (uint32_t)(uintptr_t)mb;
  uint64_t deadline = timer_us() + 100000;
  while (r32(MBOX_STATUS) & MBOX_FULL)
    if (timer_us() > deadline) return -1;
  w32(MBOX_WRITE, (addr | MBOX_BUS) | CH_PROP);
  for (;;) {
    while (r32(MBOX_STATUS) & MBOX_EMPTY)
      if (timer_us() > deadline) return -1;
    uint32_t v = r32(MBOX_READ);
    if ((v & 0xF) == CH_PROP && (v & ~0xFu) == ((addr | MBOX_BUS) & ~0xFu)) break;
  }
  barrier();
  if (mb[1] != 0x80000000u) return -1;      /* request not processed */
  if (!(mb[4] & 0x80000000u)) return -1;    /* tag not answered */
  for (uint32_t k = 0; k < nout; k++) out[k] = mb[5 + k];
  return 0;
}

int mbox_board_revision(uint32_t *rev) { return mbox_call(0x00010002, 0, 0, rev, 1); }

int mbox_board_serial(uint64_t *serial) {
  uint32_t v[2];
  if (mbox_call(0x00010004, 0, 0, v, 2)) return -1;
  *serial = ((uint64_t)v[1] << 32) | v[0];
  return 0;
}

int mbox_arm_memory(uint32_t *base, uint32_t *size) {
  uint32_t v[2];
  if (mbox_call(0x00010005, 0, 0, v, 2)) return -1;
  *base = v[0];
  *size = v[1];
  return 0;
}

int mbox_get_clock(uint32_t clock_id, uint32_t *hz) {
  uint32_t in[1] = {clock_id}, v[2];
  if (mbox_call(0x00030002, in, 1, v, 2)) return -1;
  *hz = v[1];
  return 0;
}

int mbox_set_clock(uint32_t clock_id, uint32_t hz, uint32_t *got) {
  uint32_t in[3] = {clock_id, hz, 0}, v[2];
  if (mbox_call(0x00038002, in, 3, v, 2)) return -1;
  *got = v[1];
  return 0;
}
