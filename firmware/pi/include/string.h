/* The few string functions the node core uses, for the bare-metal firmware
 * (pi/libc.c). The hosted node and the tests use the system's. */
#ifndef PI_STRING_H
#define PI_STRING_H
#include <stddef.h>
void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strcmp(const char *a, const char *b);
#endif
