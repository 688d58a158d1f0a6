/* Shared by the host-side programs (hosted node, link emulator): ptys, and
 * pacing. A virtual line clock per direction lets bytes pass at rate bytes/s,
 * as an 8N1 UART at baud/10 does, with at most `slack` seconds of idle line
 * banked. */
#ifndef PIFS_HOSTIO_H
#define PIFS_HOSTIO_H

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

static inline int make_raw(int fd) {
  struct termios t;
  if (tcgetattr(fd, &t)) return -1;
  cfmakeraw(&t);
  t.c_cc[VMIN] = 1;
  t.c_cc[VTIME] = 0;
  return tcsetattr(fd, TCSANOW, &t);
}

/* Opens a pty master; *slave is held open (so the master never sees a
 * hang-up between users) and made raw (so bytes pass unchanged). */
static inline int pty_open(int *slave, const char **name) {
  int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (m < 0 || grantpt(m) || unlockpt(m)) return -1;
  *name = ptsname(m);
  *slave = open(*name, O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (*slave < 0 || make_raw(*slave)) return -1;
  return m;
}

/* Points the symlink `link` at `target`, atomically replacing it. */
static inline int link_path(const char *link, const char *target) {
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s.tmp%d", link, (int)getpid());
  unlink(tmp);
  return symlink(target, tmp) || rename(tmp, link) ? -1 : 0;
}

static inline double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline void sleep_s(double s) {
  if (s <= 0) return;
  struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
  while (nanosleep(&ts, &ts) && errno == EINTR) {
  }
}

struct line {
  double rate;  /* bytes per second; 0 = unpaced */
  double clock; /* time at which the line is free again */
  double slack; /* the most idle time a line may "bank" (a FIFO's worth) */
};

/* Bytes that may pass now, and the time to wait when none may. */
static inline size_t line_allow(struct line *l, size_t want, double *wait) {
  *wait = 0;
  if (l->rate <= 0) return want;
  double t = now_s();
  if (l->clock < t - l->slack) l->clock = t - l->slack;
  double avail = (t - l->clock) * l->rate;
  if (avail < 1) {
    *wait = (1 - avail) / l->rate;
    return 0;
  }
  return (size_t)avail < want ? (size_t)avail : want;
}

static inline void line_used(struct line *l, size_t n) {
  if (l->rate > 0) l->clock += (double)n / l->rate;
}

#endif
