/* The pifs bootloader: what the card boots (kernel8.img on a Pi 3,
 * kernel.img on a Pi Zero/1). For BOOT_WAIT_US after power-up it listens on
 * the UART for a host that offers a program (docs/PROTOCOL.md §9: HELLO,
 * LOAD_BEGIN, LOAD_DATA, LOAD_END in the usual frames, so garbage and lost
 * bytes cost a frame, never the transfer); HELLO is answered, LOAD_BEGIN
 * keeps it serving the host. If no LOAD_BEGIN comes, it loads the node
 * firmware installed on the card (PIFS/NODE8.IMG or PIFS/NODE.IMG, through
 * the core's FAT32 code) and runs it. An image is run only after its header
 * and CRC-32C check out (image.h); a wrong or damaged one is refused, and
 * the bootloader keeps serving the host. Interrupts stay off: it polls. */
#include "board.h"
#include "emmc.h"
#include "fat32.h"
#include "image.h"
#include "proto.h"
#include "string.h"

#define BAUD 115200u
#define UART_CLOCK 48000000u
#define BOOT_WAIT_US 1000000u
#define BOOT_VERSION "boot-0.1.0"
#if defined(__aarch64__)
#define LOAD_ADDR 0x80000u
#define NODE_FILE "PIFS/NODE8.IMG"
#else
#define LOAD_ADDR 0x8000u
#define NODE_FILE "PIFS/NODE.IMG"
#endif
/* Largest image: it must end well below the bootloader (linked at 32 MiB). */
#define IMAGE_MAX (8u << 20)

#define END_INSTALL 1u
#define END_RUN 2u

static struct proto_parser rx;
static uint8_t reply[64];
static uint8_t wire[PROTO_WIRE_SIZE(PROTO_HDR + 64 + PROTO_TRAILER)];
static struct emmc card;
static struct pifs_bdev bd;
static struct fat32_vol vol;
static int card_ok;          /* the FAT32 volume mounted */
static int installed = PIFS_ENOENT; /* the installed image: 0 if it checks out */
static uint64_t serial;
static uint32_t expect, got, loading;
/* Until LOAD_BEGIN or the end of the window, requests other than HELLO get
 * no answer: a host that asks the node firmware for something at this
 * moment retries and is answered by the firmware a second later. */
static int listening = 1;

static void send(uint8_t op, uint16_t reqid, uint32_t len) {
  uint32_t n = proto_encode(wire, op, PROTO_F_RESP, reqid, reply, len);
  uart_write(0, wire, n);
}

static void status(uint8_t op, uint16_t reqid, int err) {
  st32(reply, (uint32_t)err);
  send(op, reqid, 4);
}

/* Runs the image at LOAD_ADDR: it starts as if the Pi had loaded it. */
static _Noreturn void run_image(void) {
  uart_drain();
#if defined(__aarch64__)
  __asm__ volatile("dsb sy\n ic iallu\n dsb sy\n isb" ::: "memory");
#else
  __asm__ volatile("mcr p15, 0, %0, c7, c5, 0" ::"r"(0) : "memory"); /* I-cache */
#endif
  ((void (*)(void))(uintptr_t)LOAD_ADDR)();
  PANIC("the image returned");
}

static void hello(uint16_t reqid) {
  memset(reply, 0, sizeof reply);
  st16(reply + 4, PROTO_VERSION);
  st32(reply + 8, PROTO_MAX_DATA + 64); /* one LOAD_DATA at a time */
  st32(reply + 12, PROTO_MAX_DATA);
  st64(reply + 16, serial);
  st32(reply + 24, (uint32_t)installed);
  uint32_t o = 32;
  const char *strs[2] = {BOARD_NAME, BOOT_VERSION};
  for (int i = 0; i < 2; i++) {
    uint32_t l = (uint32_t)strlen(strs[i]);
    reply[o] = (uint8_t)l;
    memcpy(reply + o + 1, strs[i], l);
    o += 1 + l;
  }
  send(OP_HELLO, reqid, o);
}

static void handle(const struct proto_frame *f) {
  const uint8_t *q = f->payload;
  uint8_t *dst = (uint8_t *)(uintptr_t)LOAD_ADDR;
  switch (f->op) {
  case OP_HELLO:
    hello(f->reqid);
    return;
  case OP_LOAD_BEGIN: /* size u32: from here on the bootloader serves the host */
    if (f->len != 4) break;
    listening = 0;
    expect = ld32(q);
    got = 0;
    loading = expect >= IMAGE_HDR_OFF + IMAGE_HDR_LEN && expect <= IMAGE_MAX;
    status(f->op, f->reqid, loading ? 0 : PIFS_ERANGE);
    return;
  case OP_LOAD_DATA: { /* offset u32, data; answer: status, next offset */
    if (f->len < 4) break;
    uint32_t off = ld32(q), n = f->len - 4;
    int err = 0;
    if (!loading) err = PIFS_EINVAL;
    else if (off > got || n > expect - off) err = PIFS_ERANGE;
    else if (off + n > got) { /* a repeat of bytes we have is answered, not copied */
      memcpy(dst + off, q + 4, n);
      got = off + n;
    }
    st32(reply, (uint32_t)err);
    st32(reply + 4, got);
    send(f->op, f->reqid, 8);
    return;
  }
  case OP_LOAD_END: { /* flags u32 */
    if (f->len != 4) break;
    uint32_t flags = ld32(q);
    int err = !loading || got != expect ? PIFS_ERANGE : image_check(dst, got, IMAGE_KIND_NODE);
    if (!err && (flags & END_INSTALL))
      err = card_ok ? fat32_overwrite_file(&vol, NODE_FILE, dst, got) : PIFS_EIO;
    if (!err && (flags & END_INSTALL)) installed = 0;
    status(f->op, f->reqid, err);
    if (!err && (flags & END_RUN)) run_image();
    return;
  }
  default:
    break;
  }
  if (!listening) status(f->op, f->reqid, PIFS_EPROTO);
}

/* Takes the bytes waiting on the UART and answers them. Errors are answered
 * as the node answers them (docs/PROTOCOL.md §4). */
static void poll_host(void) {
  int c;
  while ((c = uart_getc_poll()) >= 0) {
    uint8_t b = (uint8_t)c;
    uint32_t took = 0;
    while (!took) {
      took = proto_feed(&rx, &b, 1);
      struct proto_frame f;
      int ev;
      while ((ev = proto_next(&rx, &f)) != 0) {
        if (f.flags & PROTO_F_RESP) continue;
        if (ev == PROTO_FRAME) {
          handle(&f);
          continue;
        }
        if (listening) continue;
        st32(reply, (uint32_t)PIFS_EPROTO);
        st32(reply + 4, (uint32_t)ev);
        send(ev == PROTO_BADCRC ? OP_NAK : f.op, f.reqid, 8);
      }
    }
  }
}

/* Loads the installed node firmware into place: 0, or why not. */
static int load_installed(void) {
  if (!card_ok) return PIFS_EIO;
  uint32_t len;
  int r = fat32_read_file(&vol, NODE_FILE, (void *)(uintptr_t)LOAD_ADDR, IMAGE_MAX, &len);
  if (r) return r;
  return image_check((const uint8_t *)(uintptr_t)LOAD_ADDR, len, IMAGE_KIND_NODE);
}

void pi_main(void) {
  uint32_t clock = UART_CLOCK, hz;
  if (mbox_set_clock(CLOCK_UART, UART_CLOCK, &hz) == 0 && hz) clock = hz;
  uart_init(BAUD, clock);
  mbox_board_serial(&serial);
  proto_parser_init(&rx);
  if (emmc_init(&card) == 0) {
    emmc_bdev(&card, &bd);
    card_ok = fat32_mount(&vol, &bd) == 0;
  }
  /* Checked now so HELLO can say whether an installed image would run. */
  installed = load_installed();

  uint64_t until = timer_us() + BOOT_WAIT_US;
  while (listening && timer_us() < until) poll_host();
  if (listening && installed == 0) run_image(); /* loaded above; no host wrote over it */
  listening = 0;
  for (;;) { /* a host is loading a program, or nothing can run */
    poll_host();
    /* Sleep until the UART has a byte: its receive interrupt is enabled at
     * the controller, and a pending interrupt ends WFI even while masked. */
    wait_for_irq();
  }
}
