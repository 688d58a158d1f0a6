/* pifs-link: an emulated serial line between two ptys. Bytes written to one
 * side come out of the other at baud/10 bytes/s each way (8N1), with optional
 * faults: bit errors, dropped bytes. Used to run lrzsz (or anything else) over
 * a link paced exactly like the hosted node's, and for fault tests. */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>

#include "../hosted/hostio.h"

static const char *usage =
    "usage: pifs-link --a PATH --b PATH [--baud N] [--ber P] [--drop P] [--seed S]\n"
    "Makes two ptys, linked from PATH a and PATH b, and relays bytes between them\n"
    "at N/10 bytes/s each way (0: unpaced). --ber flips each bit with probability P;\n"
    "--drop loses each byte with probability P.\n";

static volatile sig_atomic_t stop;
static void on_signal(int sig) {
  (void)sig;
  stop = 1;
}

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static double uniform(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (double)(rng >> 11) / 9007199254740992.0;
}

struct dir {
  int from, to;
  struct line line;
  uint8_t buf[65536];
  size_t head, len; /* bytes waiting to be written to `to` */
  unsigned long long moved, flipped, dropped;
};

int main(int argc, char **argv) {
  const char *pa = NULL, *pb = NULL;
  long baud = 0;
  double ber = 0, drop = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--a") && v) pa = argv[++i];
    else if (!strcmp(a, "--b") && v) pb = argv[++i];
    else if (!strcmp(a, "--baud") && v) baud = strtol(argv[++i], NULL, 10);
    else if (!strcmp(a, "--ber") && v) ber = strtod(argv[++i], NULL);
    else if (!strcmp(a, "--drop") && v) drop = strtod(argv[++i], NULL);
    else if (!strcmp(a, "--seed") && v) rng = strtoull(argv[++i], NULL, 10) * 2654435761ull + 1;
    else if (!strcmp(a, "--help")) {
      fputs(usage, stdout);
      return 0;
    } else {
      fprintf(stderr, "pifs-link: unknown or incomplete option '%s'\n%s", a, usage);
      return 2;
    }
  }
  if (!pa || !pb || baud < 0 || ber < 0 || ber > 1 || drop < 0 || drop > 1) {
    fprintf(stderr, "pifs-link: need --a and --b; baud >= 0; probabilities within 0..1\n%s", usage);
    return 2;
  }
  int sa, sb;
  const char *na, *nb;
  char name_a[128] = "";
  int ma = pty_open(&sa, &na);
  if (ma >= 0) snprintf(name_a, sizeof name_a, "%s", na); /* ptsname's buffer is reused */
  na = name_a;
  if (ma < 0 || link_path(pa, na)) {
    fprintf(stderr, "pifs-link: pty for %s: %s\n", pa, strerror(errno));
    return 1;
  }
  int mb = pty_open(&sb, &nb);
  if (mb < 0 || link_path(pb, nb)) {
    fprintf(stderr, "pifs-link: pty for %s: %s\n", pb, strerror(errno));
    return 1;
  }
  fcntl(ma, F_SETFL, fcntl(ma, F_GETFL) | O_NONBLOCK);
  fcntl(mb, F_SETFL, fcntl(mb, F_GETFL) | O_NONBLOCK);
  printf("a %s\nb %s\n", na, nb);
  fflush(stdout);
  struct sigaction sact;
  memset(&sact, 0, sizeof sact);
  sact.sa_handler = on_signal;
  sigaction(SIGTERM, &sact, NULL);
  sigaction(SIGINT, &sact, NULL);

  double rate = (double)baud / 10.0;
  double slack = rate > 0 ? (rate * 0.02 < 64 ? 64 / rate : 0.02) : 0;
  static struct dir d[2];
  d[0].from = ma;
  d[0].to = mb;
  d[1].from = mb;
  d[1].to = ma;
  for (int k = 0; k < 2; k++) d[k].line = (struct line){rate, 0, slack};

  while (!stop) {
    struct pollfd pf[2];
    double wait = 0.2;
    for (int k = 0; k < 2; k++) {
      double w;
      size_t room = sizeof d[k].buf - d[k].len;
      size_t allow = room ? line_allow(&d[k].line, room, &w) : 0;
      if (room && !allow && w < wait) wait = w;
      pf[k].fd = d[k].from;
      pf[k].events = allow ? POLLIN : 0;
      pf[k].revents = 0;
    }
    /* room to write what is waiting */
    struct pollfd out[2];
    for (int k = 0; k < 2; k++) {
      out[k].fd = d[k].to;
      out[k].events = d[k].len ? POLLOUT : 0;
      out[k].revents = 0;
    }
    struct pollfd all[4] = {pf[0], pf[1], out[0], out[1]};
    int ms = (int)(wait * 1000) + 1;
    if (poll(all, 4, ms) < 0 && errno != EINTR) break;
    for (int k = 0; k < 2; k++) {
      struct dir *x = &d[k];
      if (all[k].revents & POLLIN) {
        double w;
        size_t room = sizeof x->buf - x->len;
        size_t allow = line_allow(&x->line, room, &w);
        size_t tail = (x->head + x->len) % sizeof x->buf;
        size_t contig = sizeof x->buf - tail;
        if (allow > contig) allow = contig;
        ssize_t n = allow ? read(x->from, x->buf + tail, allow) : 0;
        if (n > 0) {
          line_used(&x->line, (size_t)n);
          /* faults: drop bytes, flip bits */
          size_t keep = 0;
          for (ssize_t i = 0; i < n; i++) {
            uint8_t c = x->buf[tail + (size_t)i];
            if (drop > 0 && uniform() < drop) {
              x->dropped++;
              continue;
            }
            if (ber > 0)
              for (int bit = 0; bit < 8; bit++)
                if (uniform() < ber) {
                  c ^= (uint8_t)(1u << bit);
                  x->flipped++;
                }
            x->buf[tail + keep++] = c;
          }
          x->len += keep;
          x->moved += (unsigned long long)n;
        }
      }
      if (x->len) {
        size_t contig = sizeof x->buf - x->head;
        if (contig > x->len) contig = x->len;
        ssize_t n = write(x->to, x->buf + x->head, contig);
        if (n > 0) {
          x->head = (x->head + (size_t)n) % sizeof x->buf;
          x->len -= (size_t)n;
        }
      }
    }
  }
  unlink(pa);
  unlink(pb);
  fprintf(stderr, "pifs-link: a->b %llu bytes (%llu bits flipped, %llu dropped); b->a %llu bytes (%llu, %llu)\n",
          d[0].moved, d[0].flipped, d[0].dropped, d[1].moved, d[1].flipped, d[1].dropped);
  (void)sa;
  (void)sb;
  return 0;
}
