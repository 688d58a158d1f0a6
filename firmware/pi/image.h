/* The header every pifs firmware image carries at byte 8, right after its
 * first instruction (a branch over it), so a bootloader can tell a pifs
 * image for its board from anything else before running it:
 *
 *   off  size  field
 *   8    8     magic "PIFSIMG1"
 *   16   4     board: IMAGE_BOARD_PI3 (AArch64) or IMAGE_BOARD_PI0 (ARMv6)
 *   20   4     kind: IMAGE_KIND_NODE or IMAGE_KIND_BOOT
 *   24   4     size of the image in bytes
 *   28   4     CRC-32C of the image's `size` bytes with this field as zero
 *   32   16    version, NUL padded
 *
 * The linker leaves size and CRC zero; tools/pifs-imgseal fills them in. */
#ifndef PI_IMAGE_H
#define PI_IMAGE_H

#define IMAGE_HDR_OFF 8
#define IMAGE_HDR_LEN 40
#define IMAGE_BOARD_PI3 3
#define IMAGE_BOARD_PI0 0
#define IMAGE_KIND_NODE 1
#define IMAGE_KIND_BOOT 2
#define IMAGE_SIZE_OFF 24
#define IMAGE_CRC_OFF 28

#if defined(__aarch64__)
#define IMAGE_BOARD IMAGE_BOARD_PI3
#else
#define IMAGE_BOARD IMAGE_BOARD_PI0
#endif

#ifdef __ASSEMBLER__
/* The header, after a branch to `entry` and a padding word. */
.macro IMAGE_HEADER kind, version
    .ascii  "PIFSIMG1"
    .word   IMAGE_BOARD
    .word   \kind
    .word   0
    .word   0
    .ascii  "\version"
    .balign 8, 0
    .skip   IMAGE_HDR_OFF + IMAGE_HDR_LEN - (. - _start), 0
.endm
#else
#include <stdint.h>
/* Whether `img` (n bytes) is a sealed pifs image of `kind` for this board:
 * 0, or a negative pifs error (PIFS_EINVAL: not one; PIFS_EBADHASH: its CRC
 * does not match). */
int image_check(const uint8_t *img, uint32_t n, uint32_t kind);
#endif

#endif
