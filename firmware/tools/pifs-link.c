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
    "                 [--latency-ms L] [--stall-every-ms E --stall-ms M]\n"
    "Makes two ptys, linked from PATH a and PATH b, and relays bytes between them\n"
    "at N/10 bytes/s each way (0: unpaced). --ber flips each bit with probability P;\n"
    "--drop loses each byte with probability P; --latency-ms delays every byte by L ms;\n"
    "every E ms the line stalls for M ms (no byte passes either way).\n";

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

#define MAX_BATCHES 4096

struct dir {
  int from, to;
  struct line line;
  uint8_t buf[65536];
  size_t head, len; /* bytes waiting to be written to `to` */
  /* Latency: the bytes waiting form batches, each deliverable from a time. */
  struct { size_t n; double ready; } batch[MAX_BATCHES];
  size_t bhead, bcount;
  unsigned long long moved, flipped, dropped;
};

static double latency, stall_every, stall_len, t_start;

/* Inside a stall window (or 0 if none): the time it ends. */
static double stalled_until(double t) {
  if (stall_every <= 0 || stall_len <= 0) return 0;
  double k = (double)(long long)((t - t_start) / stall_every);
  double begin = t_start + k * stall_every;
  return t < begin + stall_len ? begin + stall_len : 0;
}

static void batch_push(struct dir *x, size_t n, double ready) {
  if (!n) return;
  if (x->bcount == MAX_BATCHES) { /* merge into the newest: those bytes wait a little longer */
    x->batch[(x->bhead + x->bcount - 1) % MAX_BATCHES].n += n;
    return;
  }
  size_t i = (x->bhead + x->bcount++) % MAX_BATCHES;
  x->batch[i].n = n;
  x->batch[i].ready = ready;
}

/* Bytes deliverable now; *next gets when more will be (0: none waiting). */
static size_t deliverable(struct dir *x, double t, double *next) {
  size_t n = 0;
  *next = 0;
  for (size_t k = 0; k < x->bcount; k++) {
    size_t i = (x->bhead + k) % MAX_BATCHES;
    if (x->batch[i].ready > t) {
      *next = x->batch[i].ready;
      break;
    }
    n += x->batch[i].n;
  }
  return n;
}

static void batch_pop(struct dir *x, size_t n) {
  while (n && x->bcount) {
    size_t k = n < x->batch[x->bhead].n ? n : x->batch[x->bhead].n;
    x->batch[x->bhead].n -= k;
    n -= k;
    if (!x->batch[x->bhead].n) {
      x->bhead = (x->bhead + 1) % MAX_BATCHES;
      x->bcount--;
    }
  }
}

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
    else if (!strcmp(a, "--latency-ms") && v) latency = strtod(argv[++i], NULL) / 1000;
    else if (!strcmp(a, "--stall-every-ms") && v) stall_every = strtod(argv[++i], NULL) / 1000;
    else if (!strcmp(a, "--stall-ms") && v) stall_len = strtod(argv[++i], NULL) / 1000;
    else if (!strcmp(a, "--help")) {
      fputs(usage, stdout);
      return 0;
    } else {
      fprintf(stderr, "pifs-link: unknown or incomplete option '%s'\n%s", a, usage);
      return 2;
    }
  }
  if (!pa || !pb || baud < 0 || ber < 0 || ber > 1 || drop < 0 || drop > 1 || latency < 0 ||
      stall_every < 0 || stall_len < 0 || (stall_len > 0 && stall_len >= stall_every)) {
    fprintf(stderr,
            "pifs-link: need --a and --b; baud >= 0; probabilities within 0..1; latency >= 0; "
            "a stall shorter than its period\n%s",
            usage);
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

  t_start = now_s();
  while (!stop) {
    struct pollfd pf[2];
    double wait = 0.2;
    double t = now_s(), stall_end = stalled_until(t);
    for (int k = 0; k < 2; k++) {
      double w;
      size_t room = sizeof d[k].buf - d[k].len;
      size_t allow = room && !stall_end ? line_allow(&d[k].line, room, &w) : 0;
      if (room && !allow && !stall_end && w < wait) wait = w;
      pf[k].fd = d[k].from;
      pf[k].events = allow ? POLLIN : 0;
      pf[k].revents = 0;
    }
    if (stall_end && stall_end - t < wait) wait = stall_end - t;
    /* room to write what is due */
    struct pollfd out[2];
    size_t due[2];
    for (int k = 0; k < 2; k++) {
      double next = 0;
      due[k] = stall_end ? 0 : deliverable(&d[k], t, &next);
      if (!due[k] && next && next - t < wait) wait = next - t;
      out[k].fd = d[k].to;
      out[k].events = due[k] ? POLLOUT : 0;
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
          batch_push(x, keep, now_s() + latency);
          x->moved += (unsigned long long)n;
        }
      }
      if (due[k]) {
        size_t contig = sizeof x->buf - x->head;
        if (contig > due[k]) contig = due[k];
        ssize_t n = write(x->to, x->buf + x->head, contig);
        if (n > 0) {
          x->head = (x->head + (size_t)n) % sizeof x->buf;
          x->len -= (size_t)n;
          batch_pop(x, (size_t)n);
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
