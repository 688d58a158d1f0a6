/* pifs-imgseal IMAGE: fills in the size and CRC-32C of a firmware image's
 * header (pi/image.h) after the linker made it, so the bootloader can check
 * the image before it runs it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crc32c.h"
#include "pifs.h"

#define HDR 8
int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: pifs-imgseal IMAGE\n");
    return 2;
  }
  FILE *f = fopen(argv[1], "r+b");
  if (!f) {
    perror(argv[1]);
    return 1;
  }
  static uint8_t img[16u << 20];
  size_t n = fread(img, 1, sizeof img, f);
  if (n < HDR + 40 || n == sizeof img || memcmp(img + HDR, "PIFSIMG1", 8)) {
    fprintf(stderr, "pifs-imgseal: %s: no pifs image header at byte %d (or too large)\n", argv[1],
            HDR);
    return 1;
  }
  st32(img + HDR + 16, (uint32_t)n);
  st32(img + HDR + 20, 0);
  st32(img + HDR + 20, crc32c(img, n));
  if (fseek(f, 0, SEEK_SET) || fwrite(img, 1, n, f) != n || fclose(f)) {
    perror(argv[1]);
    return 1;
  }
  return 0;
}
