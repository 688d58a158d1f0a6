/* Checking a firmware image before running it (image.h). */
#include "image.h"

#include "crc32c.h"
#include "pifs.h"
#include "string.h"

int image_check(const uint8_t *img, uint32_t n, uint32_t kind) {
  if (n < IMAGE_HDR_OFF + IMAGE_HDR_LEN) return PIFS_EINVAL;
  const uint8_t *h = img + IMAGE_HDR_OFF;
  if (memcmp(h, "PIFSIMG1", 8) || ld32(h + 8) != IMAGE_BOARD || ld32(h + 12) != kind)
    return PIFS_EINVAL;
  uint32_t size = ld32(h + 16), want = ld32(h + 20);
  if (size < IMAGE_HDR_OFF + IMAGE_HDR_LEN || size > n) return PIFS_EINVAL;
  static const uint8_t zero[4];
  uint32_t crc = crc32c_update(0, img, IMAGE_HDR_OFF + 20);
  crc = crc32c_update(crc, zero, 4);
  crc = crc32c_update(crc, h + 24, size - (IMAGE_HDR_OFF + 24));
  return crc == want ? 0 : PIFS_EBADHASH;
}
