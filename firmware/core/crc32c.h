#ifndef PIFS_CRC32C_H
#define PIFS_CRC32C_H
#include <stddef.h>
#include <stdint.h>
/* CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), init and final xor
 * 0xFFFFFFFF. crc32c_update(0, p, n) is the CRC of p; chain by passing the
 * previous result. crc32c("123456789") == 0xE3069283. */
uint32_t crc32c_update(uint32_t crc, const void *data, size_t n);
static inline uint32_t crc32c(const void *data, size_t n) { return crc32c_update(0, data, n); }
#endif
