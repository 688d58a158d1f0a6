/* What the node core needs of a C library, on bare metal: memory and string
 * functions and a heap. Built with -fno-builtin and without loop-to-call
 * transformations, so memset cannot turn into a call to itself.
 *
 * The heap is a first-fit free list kept in address order; free() merges a
 * block with its free neighbours. The core allocates a few large tables (the
 * chunk table, the data bitmap, the journal index) and grows them with
 * realloc, so first fit with merging keeps fragmentation low. */
#include <stddef.h>
#include <stdint.h>

#include "board.h"
#include "stdlib.h"
#include "string.h"

void *memcpy(void *dst, const void *src, size_t n) {
  uint8_t *d = dst;
  const uint8_t *s = src;
  if ((((uintptr_t)d | (uintptr_t)s) & 7) == 0) {
    while (n >= 8) {
      *(uint64_t *)(void *)d = *(const uint64_t *)(const void *)s;
      d += 8, s += 8, n -= 8;
    }
  }
  while (n--) *d++ = *s++;
  return dst;
}

void *memmove(void *dst, const void *src, size_t n) {
  uint8_t *d = dst;
  const uint8_t *s = src;
  if (d == s || n == 0) return dst;
  if (d < s || d >= s + n) return memcpy(dst, src, n);
  while (n--) d[n] = s[n];
  return dst;
}

void *memset(void *dst, int c, size_t n) {
  uint8_t *d = dst;
  uint8_t b = (uint8_t)c;
  if (((uintptr_t)d & 7) == 0) {
    uint64_t w = b * 0x0101010101010101ull;
    while (n >= 8) {
      *(uint64_t *)(void *)d = w;
      d += 8, n -= 8;
    }
  }
  while (n--) *d++ = b;
  return dst;
}

int memcmp(const void *a, const void *b, size_t n) {
  const uint8_t *x = a, *y = b;
  for (; n; n--, x++, y++)
    if (*x != *y) return *x < *y ? -1 : 1;
  return 0;
}

size_t strlen(const char *s) {
  size_t n = 0;
  while (s[n]) n++;
  return n;
}

int strcmp(const char *a, const char *b) {
  while (*a && *a == *b) a++, b++;
  return (unsigned char)*a - (unsigned char)*b;
}

/* A block: its size (header included, a multiple of 16) and, while free, the
 * next free block. The payload starts 16 bytes in, 16-byte aligned. */
struct block {
  size_t size;
  struct block *next;
};
#define HDR 16u

static struct block *free_list;

void heap_init(uintptr_t start, uintptr_t end) {
  start = (start + 15) & ~(uintptr_t)15;
  end &= ~(uintptr_t)15;
  if (end <= start + 64) PANIC("no room for a heap");
  free_list = (struct block *)start;
  free_list->size = end - start;
  free_list->next = NULL;
}

void *malloc(size_t n) {
  if (n == 0) n = 1;
  if (n > ((size_t)1 << 30)) return NULL;
  size_t need = (n + HDR + 15) & ~(size_t)15;
  for (struct block **pp = &free_list; *pp; pp = &(*pp)->next) {
    struct block *b = *pp;
    if (b->size < need) continue;
    if (b->size - need >= 64) { /* split: the tail stays free */
      struct block *rest = (struct block *)((uint8_t *)b + need);
      rest->size = b->size - need;
      rest->next = b->next;
      *pp = rest;
      b->size = need;
    } else {
      *pp = b->next;
    }
    return (uint8_t *)b + HDR;
  }
  return NULL;
}

void free(void *p) {
  if (!p) return;
  struct block *b = (struct block *)((uint8_t *)p - HDR);
  struct block *prev = NULL, *cur = free_list;
  while (cur && cur < b) prev = cur, cur = cur->next;
  if ((uint8_t *)b + b->size > (uint8_t *)cur && cur) PANIC("heap: free of a bad pointer");
  b->next = cur;
  if (prev) prev->next = b;
  else free_list = b;
  if (cur && (uint8_t *)b + b->size == (uint8_t *)cur) { /* merge forward */
    b->size += cur->size;
    b->next = cur->next;
  }
  if (prev && (uint8_t *)prev + prev->size == (uint8_t *)b) { /* merge backward */
    prev->size += b->size;
    prev->next = b->next;
  }
}

void *calloc(size_t n, size_t size) {
  if (size && n > ((size_t)1 << 30) / size) return NULL;
  void *p = malloc(n * size);
  if (p) memset(p, 0, n * size);
  return p;
}

void *realloc(void *p, size_t n) {
  if (!p) return malloc(n);
  struct block *b = (struct block *)((uint8_t *)p - HDR);
  size_t have = b->size - HDR;
  if (n <= have) return p;
  void *q = malloc(n);
  if (!q) return NULL;
  memcpy(q, p, have);
  free(p);
  return q;
}
