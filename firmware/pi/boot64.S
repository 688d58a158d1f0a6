/* Entry of the AArch64 images (Pi 3, loaded at 0x80000). The first
 * instruction branches over the image header (image.h). Cores other than 0
 * sleep. Core 0 (the bootloader first moves itself to where it is linked,
 * so that a node image can be loaded at 0x80000) drops from EL3 or EL2 to
 * EL1 with the MMU and data cache off and the instruction cache on, sets
 * its stack and vectors, clears .bss
 * and calls pi_main. */
#include "image.h"

.section ".text.boot"
.global _start
_start:
    b       entry
    .word   0
    IMAGE_HEADER IMAGE_KIND, "0.1.0"
entry:
    mrs     x0, mpidr_el1
    and     x0, x0, #3
    cbz     x0, 2f
1:  wfi                             // a core started here (not from a spin table)
    b       1b
2:
#ifdef RELOCATE
    adr     x1, _start              // where the image was loaded
    ldr     x2, =_start             // where it is linked
    cmp     x1, x2
    b.eq    3f
    ldr     x3, =__image_end
    sub     x3, x3, x2
0:  ldr     x4, [x1], #8
    str     x4, [x2], #8
    subs    x3, x3, #8
    b.gt    0b
    dsb     sy
    ic      iallu
    dsb     sy
    isb
    ldr     x1, =3f
    br      x1
3:
#endif
    // Cores 1-3 wait in the boot stub's spin table (0xd8 + 8 * core) for an
    // address to jump to. They go to a two-instruction loop at 0x100 (below
    // anything an image uses) where WFI lets them sleep for good: a WFE
    // loop would keep an emulated CPU busy.
    mov     x2, #0x100
    ldr     w1, =0xd503207f         // wfi
    str     w1, [x2]
    ldr     w1, =0x17ffffff         // b .-4
    str     w1, [x2, #4]
    dsb     sy
    str     x2, [x2, #-0x20]        // 0xe0: core 1
    str     x2, [x2, #-0x18]        // 0xe8: core 2
    str     x2, [x2, #-0x10]        // 0xf0: core 3
    dsb     sy
    sev
    mrs     x0, CurrentEL
    lsr     x0, x0, #2
    cmp     x0, #3
    b.ne    3f
    mov     x1, #0x5b1              // SCR_EL3: NS, RES1, SMD, HCE, RW (EL2 is AArch64)
    msr     scr_el3, x1
    mov     x1, #0x3c9              // EL2h, interrupts masked
    msr     spsr_el3, x1
    adr     x1, 3f
    msr     elr_el3, x1
    eret
3:  mrs     x0, CurrentEL
    lsr     x0, x0, #2
    cmp     x0, #2
    b.ne    4f
    mov     x1, #(1 << 31)          // HCR_EL2.RW: EL1 is AArch64
    msr     hcr_el2, x1
    mov     x1, #3                  // EL1 may read the counters
    msr     cnthctl_el2, x1
    msr     cntvoff_el2, xzr
    mov     x1, #0x33ff             // no traps of FP/SIMD to EL2
    msr     cptr_el2, x1
    msr     hstr_el2, xzr
    // SCTLR_EL1: RES1 bits, the MMU and data cache off, the instruction
    // cache on (I, bit 12: instruction fetches are cacheable even with the
    // MMU off), and with PI_ALIGN_CHECK, A: alignment faults. The cache is
    // invalidated first: whatever the GPU firmware left in it is stale.
    ic      iallu
    dsb     sy
    isb
#if defined(PI_ALIGN_CHECK)
    ldr     x1, =0x30d01802
#else
    ldr     x1, =0x30d01800
#endif
    msr     sctlr_el1, x1
    mov     x1, #0x3c5              // EL1h, interrupts masked
    msr     spsr_el2, x1
    adr     x1, 4f
    msr     elr_el2, x1
    eret
4:  mov     x1, #(3 << 20)          // no FP/SIMD traps at EL1
    msr     cpacr_el1, x1
    isb
    ldr     x1, =__stack_top
    mov     sp, x1
    ldr     x1, =vectors
    msr     vbar_el1, x1
    isb
    ldr     x1, =__bss_start
    ldr     x2, =__bss_end
5:  cmp     x1, x2
    b.hs    6f
    str     xzr, [x1], #8
    b       5b
6:  bl      pi_main
7:  wfe
    b       7b

// Saves the registers a C function may change, calls irq_handler, returns.
.macro SAVE
    sub     sp, sp, #192
    stp     x0, x1, [sp, #0]
    stp     x2, x3, [sp, #16]
    stp     x4, x5, [sp, #32]
    stp     x6, x7, [sp, #48]
    stp     x8, x9, [sp, #64]
    stp     x10, x11, [sp, #80]
    stp     x12, x13, [sp, #96]
    stp     x14, x15, [sp, #112]
    stp     x16, x17, [sp, #128]
    stp     x18, x29, [sp, #144]
    mrs     x0, elr_el1
    mrs     x1, spsr_el1
    stp     x30, x0, [sp, #160]
    str     x1, [sp, #176]
.endm
.macro RESTORE
    ldr     x1, [sp, #176]
    ldp     x30, x0, [sp, #160]
    msr     elr_el1, x0
    msr     spsr_el1, x1
    ldp     x0, x1, [sp, #0]
    ldp     x2, x3, [sp, #16]
    ldp     x4, x5, [sp, #32]
    ldp     x6, x7, [sp, #48]
    ldp     x8, x9, [sp, #64]
    ldp     x10, x11, [sp, #80]
    ldp     x12, x13, [sp, #96]
    ldp     x14, x15, [sp, #112]
    ldp     x16, x17, [sp, #128]
    ldp     x18, x29, [sp, #144]
    add     sp, sp, #192
.endm

.macro OTHER kind
    .balign 0x80
    mov     x0, #\kind
    mrs     x1, esr_el1
    mrs     x2, elr_el1
    mrs     x3, far_el1
    b       exception_handler
.endm

.balign 0x800
vectors:
    OTHER 0                         // current EL, SP0: sync
    OTHER 1                         //   IRQ
    OTHER 2                         //   FIQ
    OTHER 3                         //   SError
    OTHER 4                         // current EL, SPx: sync
    .balign 0x80                    //   IRQ: the one we use
    SAVE
    bl      irq_handler
    RESTORE
    eret
    OTHER 6                         //   FIQ
    OTHER 7                         //   SError
    OTHER 8                         // lower EL, AArch64
    OTHER 9
    OTHER 10
    OTHER 11
    OTHER 12                        // lower EL, AArch32
    OTHER 13
    OTHER 14
    OTHER 15
