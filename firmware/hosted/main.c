/* The hosted node: the node core as a Linux/macOS program. Its card is an
 * image file, its UART a pty it creates (or stdio, or an existing tty), and
 * --baud paces both directions at baud/10 bytes/s like a real 8N1 link. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "node.h"
#include "hostio.h"

static const char *usage =
    "usage: pifs-node --card IMAGE [--pty-link PATH | --stdio | --tty PATH] [--baud N]\n"
    "                 [--board NAME] [--window BYTES] [--no-sync] [--read-only]\n"
    "Serves one pifs node: the card is an image file, the UART a new pty (its path\n"
    "is printed as 'pty PATH' and linked from --pty-link), stdio, or a tty.\n"
    "--baud N paces both directions at N/10 bytes/s (8N1); 0 means unpaced.\n"
    "--read-only opens the image read-only: every write to the card fails (EIO),\n"
    "so the image is never changed (used by `pifs recover`).\n";

struct file_bdev {
  int fd;
  int sync;
  int read_only;
};

static int fb_read(void *ctx, uint64_t lba, uint32_t count, void *buf) {
  struct file_bdev *f = ctx;
  size_t want = (size_t)count * PIFS_SECTOR;
  ssize_t r = pread(f->fd, buf, want, (off_t)(lba * PIFS_SECTOR));
  return r == (ssize_t)want ? 0 : PIFS_EIO;
}

static int fb_write(void *ctx, uint64_t lba, uint32_t count, const void *buf) {
  struct file_bdev *f = ctx;
  if (f->read_only) return PIFS_EIO;
  size_t want = (size_t)count * PIFS_SECTOR;
  ssize_t r = pwrite(f->fd, buf, want, (off_t)(lba * PIFS_SECTOR));
  return r == (ssize_t)want ? 0 : PIFS_EIO;
}

static int fb_flush(void *ctx) {
  struct file_bdev *f = ctx;
  if (!f->sync) return 0;
  return fdatasync(f->fd) == 0 ? 0 : PIFS_EIO;
}

struct io {
  int rfd, wfd;
  struct line tx;
};

static volatile sig_atomic_t stop;

static void on_signal(int sig) {
  (void)sig;
  stop = 1;
}

static int io_write(void *ctx, const void *buf, uint32_t n) {
  struct io *io = ctx;
  const uint8_t *p = buf;
  while (n) {
    double wait;
    size_t k = line_allow(&io->tx, n, &wait);
    if (!k) {
      sleep_s(wait);
      continue;
    }
    ssize_t w = write(io->wfd, p, k);
    if (w < 0) {
      if (errno == EINTR && !stop) continue;
      if (errno == EAGAIN) {
        struct pollfd pf = {io->wfd, POLLOUT, 0};
        poll(&pf, 1, 100);
        continue;
      }
      return PIFS_EIO;
    }
    line_used(&io->tx, (size_t)w);
    p += w;
    n -= (uint32_t)w;
  }
  return 0;
}

static void fat_now(uint16_t *date, uint16_t *tm) {
  time_t t = time(NULL);
  struct tm g;
  gmtime_r(&t, &g);
  *date = (uint16_t)(((g.tm_year - 80) << 9) | ((g.tm_mon + 1) << 5) | g.tm_mday);
  *tm = (uint16_t)((g.tm_hour << 11) | (g.tm_min << 5) | (g.tm_sec / 2));
}

int main(int argc, char **argv) {
  const char *card = NULL, *pty_link = NULL, *tty = NULL, *board = "hosted";
  int use_stdio = 0, sync = 1, read_only = 0;
  long baud = 0, window = 65536;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--card") && v) card = argv[++i];
    else if (!strcmp(a, "--pty-link") && v) pty_link = argv[++i];
    else if (!strcmp(a, "--tty") && v) tty = argv[++i];
    else if (!strcmp(a, "--board") && v) board = argv[++i];
    else if (!strcmp(a, "--baud") && v) baud = strtol(argv[++i], NULL, 10);
    else if (!strcmp(a, "--window") && v) window = strtol(argv[++i], NULL, 10);
    else if (!strcmp(a, "--stdio")) use_stdio = 1;
    else if (!strcmp(a, "--no-sync")) sync = 0;
    else if (!strcmp(a, "--read-only")) read_only = 1;
    else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      fputs(usage, stdout);
      return 0;
    } else {
      fprintf(stderr, "pifs-node: unknown or incomplete option '%s'\n%s", a, usage);
      return 2;
    }
  }
  if (!card) {
    fprintf(stderr, "pifs-node: --card IMAGE is required\n%s", usage);
    return 2;
  }
  if (baud < 0 || window < 1024 || window > (1 << 24)) {
    fprintf(stderr, "pifs-node: --baud must be >= 0 and --window within 1024..16777216\n");
    return 2;
  }

  struct file_bdev fb = {open(card, (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC), sync, read_only};
  if (fb.fd < 0) {
    fprintf(stderr, "pifs-node: cannot open card image '%s': %s\n", card, strerror(errno));
    return 1;
  }
  struct stat st;
  fstat(fb.fd, &st);
  struct pifs_bdev bd = {&fb, (uint64_t)st.st_size / PIFS_SECTOR, fb_read, fb_write, fb_flush};

  struct io io = {0, 1, {0, 0, 0}};
  int slave = -1;
  if (use_stdio) {
    io.rfd = 0;
    io.wfd = 1;
  } else if (tty) {
    io.rfd = io.wfd = open(tty, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (io.rfd < 0 || make_raw(io.rfd)) {
      fprintf(stderr, "pifs-node: cannot open tty '%s': %s\n", tty, strerror(errno));
      return 1;
    }
  } else {
    const char *name;
    int m = pty_open(&slave, &name);
    if (m < 0) {
      fprintf(stderr, "pifs-node: cannot create a pty: %s\n", strerror(errno));
      return 1;
    }
    io.rfd = io.wfd = m;
    if (pty_link && link_path(pty_link, name)) {
      fprintf(stderr, "pifs-node: cannot link '%s' to %s: %s\n", pty_link, name, strerror(errno));
      return 1;
    }
    printf("pty %s\n", name);
    fflush(stdout);
  }
  double rate = (double)baud / 10.0;
  double slack = rate > 0 ? (rate * 0.02 < 64 ? 64 / rate : 0.02) : 0;
  io.tx.rate = rate;
  io.tx.slack = slack;
  struct line rx = {rate, 0, slack};

  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);

  static struct pifs_node node;
  struct pifs_platform pl = {
      .board = board, .window = (uint32_t)window, .io = &io, .write = io_write, .fat_now = fat_now};
  node_init(&node, &bd, &pl);
  fprintf(stderr, "pifs-node: card %s: %s%s\n", card,
          node.store ? "store mounted" : pifs_err_to_str(node.card_err),
          read_only ? " (read-only)" : "");

  static uint8_t buf[65536];
  while (!stop) {
    double wait;
    size_t allow = line_allow(&rx, sizeof buf, &wait);
    if (!allow) {
      sleep_s(wait);
      continue;
    }
    struct pollfd pf = {io.rfd, POLLIN, 0};
    /* A frame left incomplete for PIFS_IDLE_MS is dropped: its sender is
     * gone (or will retransmit), and the next frame must not become its
     * payload. */
    int partial = node_partial(&node);
    int r = poll(&pf, 1, partial ? PIFS_IDLE_MS : 200);
    if (r < 0 && errno != EINTR) break;
    if (r == 0 && partial) node_idle(&node);
    if (r <= 0) continue;
    if (pf.revents & (POLLERR | POLLNVAL)) break;
    if (pf.revents & POLLHUP && !(pf.revents & POLLIN)) {
      if (slave >= 0) { /* cannot happen while we hold the slave; be safe */
        sleep_s(0.05);
        continue;
      }
      break;
    }
    /* Take what the line could have carried by now, no more. */
    allow = line_allow(&rx, sizeof buf, &wait);
    ssize_t k = read(io.rfd, buf, allow ? allow : 1);
    if (k < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      break;
    }
    if (k == 0) break; /* EOF on stdio */
    line_used(&rx, (size_t)k);
    node_feed(&node, buf, (uint32_t)k);
  }
  node_close(&node);
  if (pty_link) unlink(pty_link);
  close(fb.fd);
  fprintf(stderr, "pifs-node: stopped\n");
  return 0;
}
