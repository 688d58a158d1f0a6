/* The allocator of the bare-metal firmware (pi/libc.c). */
#ifndef PI_STDLIB_H
#define PI_STDLIB_H
#include <stddef.h>
void *malloc(size_t n);
void *calloc(size_t n, size_t size);
void *realloc(void *p, size_t n);
void free(void *p);
#endif
