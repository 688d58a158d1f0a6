/* Entry of the ARMv6 images (Pi Zero/1, loaded at 0x8000, entered in SVC
 * mode). The first instruction branches over the image header (image.h);
 * the bootloader then moves itself to where it is linked. Copies the vector table to address 0, sets the IRQ and SVC stacks,
 * turns on unaligned access support and the instruction cache, clears .bss
 * and calls pi_main. */
#include "image.h"

.section ".text.boot"
.global _start
_start:
    b       entry
    .word   0
    IMAGE_HEADER IMAGE_KIND, "0.1.0"
entry:
#ifdef RELOCATE
    adr     r0, _start              // where the image was loaded
    ldr     r1, =_start             // where it is linked
    cmp     r0, r1
    beq     1f
    ldr     r2, =__image_end
    sub     r2, r2, r1
0:  ldr     r3, [r0], #4
    str     r3, [r1], #4
    subs    r2, r2, #4
    bgt     0b
1:
#endif
    ldr     pc, =reset
vector_table:
    ldr     pc, v_reset
    ldr     pc, v_undef
    ldr     pc, v_swi
    ldr     pc, v_pabort
    ldr     pc, v_dabort
    ldr     pc, v_reset
    ldr     pc, v_irq
    ldr     pc, v_fiq
v_reset:  .word reset
v_undef:  .word undef_entry
v_swi:    .word swi_entry
v_pabort: .word pabort_entry
v_dabort: .word dabort_entry
v_irq:    .word irq_entry
v_fiq:    .word fiq_entry

reset:
    cpsid   if
    ldr     r0, =vector_table       // 16 words: the branches and their targets
    mov     r1, #0
    ldmia   r0!, {r2-r9}
    stmia   r1!, {r2-r9}
    ldmia   r0!, {r2-r9}
    stmia   r1!, {r2-r9}
    mrc     p15, 0, r0, c1, c0, 0   // SCTLR: U (unaligned), I-cache, branch prediction;
    orr     r0, r0, #(1 << 22)      // V cleared: vectors at 0
    orr     r0, r0, #(1 << 12)
    orr     r0, r0, #(1 << 11)
    bic     r0, r0, #(1 << 13)
#if defined(PI_ALIGN_CHECK)
    orr     r0, r0, #(1 << 1)       // A: every misaligned access faults, as on Device memory
#endif
    mcr     p15, 0, r0, c1, c0, 0
    cps     #0x12                   // IRQ mode stack
    ldr     sp, =__irq_stack_top
    cps     #0x17                   // abort mode shares it: we only panic there
    ldr     sp, =__irq_stack_top
    cps     #0x1b
    ldr     sp, =__irq_stack_top
    cps     #0x13                   // back to SVC
    ldr     sp, =__stack_top
    ldr     r0, =__bss_start
    ldr     r1, =__bss_end
    mov     r2, #0
1:  cmp     r0, r1
    strlo   r2, [r0], #4
    blo     1b
    bl      pi_main
2:  mcr     p15, 0, r2, c7, c0, 4
    b       2b

irq_entry:
    sub     lr, lr, #4
    push    {r0-r3, r12, lr}
    bl      irq_handler
    ldmfd   sp!, {r0-r3, r12, pc}^

.macro OTHER name, kind
\name:
    sub     r4, lr, #8              // about where it happened
    mrc     p15, 0, r2, c5, c0, 0   // DFSR
    mrc     p15, 0, r5, c6, c0, 0   // FAR
    mov     r6, #0
    // exception_handler(kind, syndrome, addr, fault), each a uint64_t:
    // kind in r0:r1, syndrome in r2:r3, addr and fault on the stack
    sub     sp, sp, #16
    str     r4, [sp]
    str     r6, [sp, #4]
    str     r5, [sp, #8]
    str     r6, [sp, #12]
    mov     r0, #\kind
    mov     r1, #0
    mov     r3, #0
    b       exception_handler
.endm
OTHER undef_entry, 1
OTHER swi_entry, 2
OTHER pabort_entry, 3
OTHER dabort_entry, 4
OTHER fiq_entry, 5
