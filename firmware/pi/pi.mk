# The bare-metal images, included by firmware/Makefile:
#   build/pi3/node.img, boot.img  Pi 3 (BCM2837, AArch64), gcc-aarch64-linux-gnu
#   build/pi0/node.img, boot.img  Pi Zero/1 (BCM2835, ARMv6), gcc-arm-none-eabi
# node.img is the node firmware, boot.img the bootloader (kernel8.img /
# kernel.img on the card). Both are sealed (pi/image.h) by pifs-imgseal.
# Both link the unchanged node core with the drivers in pi/; no C library:
# pi/libc.c and pi/include/ provide what the core needs.
CC64 ?= aarch64-linux-gnu-gcc
CC32 ?= arm-none-eabi-gcc
OBJCOPY64 ?= aarch64-linux-gnu-objcopy
OBJCOPY32 ?= arm-none-eabi-objcopy
PI_CFLAGS := -std=c11 -O2 -g -Wall -Wextra -Werror -ffreestanding -fno-builtin \
  -fno-tree-loop-distribute-patterns -fno-stack-protector -ffunction-sections -fdata-sections \
  -nostdinc -Ipi/include -Ipi -Icore $(PI_EXTRA)
PI3_CFLAGS := $(PI_CFLAGS) -isystem $(shell $(CC64) -print-file-name=include 2>/dev/null) \
  -mcpu=cortex-a53 -mgeneral-regs-only -mstrict-align -fno-pie -mno-outline-atomics
PI0_CFLAGS := $(PI_CFLAGS) -isystem $(shell $(CC32) -print-file-name=include 2>/dev/null) \
  -mcpu=arm1176jzf-s -marm -mfloat-abi=soft -mno-unaligned-access
PI_LDFLAGS := -nostdlib -nostartfiles -static -Wl,--gc-sections -Wl,--build-id=none -Wl,--no-warn-rwx-segments
PI_SRC := pi/libc.c pi/timer.c pi/irq.c pi/uart.c pi/mbox.c pi/emmc.c pi/panic.c pi/image.c
NODE_SRC := $(CORE_SRC) $(PI_SRC) pi/node_main.c
# The bootloader: the drivers, the frame codec and the FAT32 reader; linked
# at 32 MiB (it moves itself there) so a node image can load where the Pi
# loads kernels.
BOOT_SRC := core/proto.c core/crc32c.c core/fat32.c core/errstr.c $(PI_SRC) pi/boot_main.c
BOOT_BASE := 0x02000000
# A test image that panics on purpose (tests/qemu/cases.ts).
PANIC_SRC := core/crc32c.c $(PI_SRC) pi/panic_main.c
PI_DEPS := $(wildcard core/*.h pi/*.h pi/include/*.h) pi/pi.mk

$(B)/pi3/%.o: %.c $(PI_DEPS)
	@mkdir -p $(dir $@)
	$(CC64) $(PI3_CFLAGS) -c $< -o $@
$(B)/pi3/%.node.o: %.S $(PI_DEPS)
	@mkdir -p $(dir $@)
	$(CC64) $(PI3_CFLAGS) -DIMAGE_KIND=IMAGE_KIND_NODE -c $< -o $@
$(B)/pi3/%.boot.o: %.S $(PI_DEPS)
	@mkdir -p $(dir $@)
	$(CC64) $(PI3_CFLAGS) -DIMAGE_KIND=IMAGE_KIND_BOOT -DRELOCATE -c $< -o $@
$(B)/pi0/%.o: %.c $(PI_DEPS)
	@mkdir -p $(dir $@)
	$(CC32) $(PI0_CFLAGS) -c $< -o $@
$(B)/pi0/%.node.o: %.S $(PI_DEPS)
	@mkdir -p $(dir $@)
	$(CC32) $(PI0_CFLAGS) -DIMAGE_KIND=IMAGE_KIND_NODE -c $< -o $@
$(B)/pi0/%.boot.o: %.S $(PI_DEPS)
	@mkdir -p $(dir $@)
	$(CC32) $(PI0_CFLAGS) -DIMAGE_KIND=IMAGE_KIND_BOOT -DRELOCATE -c $< -o $@

$(B)/pi3/node.elf: $(NODE_SRC:%.c=$(B)/pi3/%.o) $(B)/pi3/pi/boot64.node.o pi/link64.ld
	$(CC64) $(PI3_CFLAGS) $(PI_LDFLAGS) -T pi/link64.ld -Wl,--defsym=IMAGE_BASE=0x80000 \
	  $(B)/pi3/pi/boot64.node.o $(NODE_SRC:%.c=$(B)/pi3/%.o) -lgcc -o $@
$(B)/pi3/boot.elf: $(BOOT_SRC:%.c=$(B)/pi3/%.o) $(B)/pi3/pi/boot64.boot.o pi/link64.ld
	$(CC64) $(PI3_CFLAGS) $(PI_LDFLAGS) -T pi/link64.ld -Wl,--defsym=IMAGE_BASE=$(BOOT_BASE) \
	  $(B)/pi3/pi/boot64.boot.o $(BOOT_SRC:%.c=$(B)/pi3/%.o) -lgcc -o $@
$(B)/pi0/node.elf: $(NODE_SRC:%.c=$(B)/pi0/%.o) $(B)/pi0/pi/boot32.node.o pi/link32.ld
	$(CC32) $(PI0_CFLAGS) $(PI_LDFLAGS) -T pi/link32.ld -Wl,--defsym=IMAGE_BASE=0x8000 \
	  $(B)/pi0/pi/boot32.node.o $(NODE_SRC:%.c=$(B)/pi0/%.o) -lgcc -o $@
$(B)/pi0/boot.elf: $(BOOT_SRC:%.c=$(B)/pi0/%.o) $(B)/pi0/pi/boot32.boot.o pi/link32.ld
	$(CC32) $(PI0_CFLAGS) $(PI_LDFLAGS) -T pi/link32.ld -Wl,--defsym=IMAGE_BASE=$(BOOT_BASE) \
	  $(B)/pi0/pi/boot32.boot.o $(BOOT_SRC:%.c=$(B)/pi0/%.o) -lgcc -o $@
$(B)/pi3/panic-test.elf: $(PANIC_SRC:%.c=$(B)/pi3/%.o) $(B)/pi3/pi/boot64.node.o pi/link64.ld
	$(CC64) $(PI3_CFLAGS) $(PI_LDFLAGS) -T pi/link64.ld -Wl,--defsym=IMAGE_BASE=0x80000 \
	  $(B)/pi3/pi/boot64.node.o $(PANIC_SRC:%.c=$(B)/pi3/%.o) -lgcc -o $@
$(B)/pi0/panic-test.elf: $(PANIC_SRC:%.c=$(B)/pi0/%.o) $(B)/pi0/pi/boot32.node.o pi/link32.ld
	$(CC32) $(PI0_CFLAGS) $(PI_LDFLAGS) -T pi/link32.ld -Wl,--defsym=IMAGE_BASE=0x8000 \
	  $(B)/pi0/pi/boot32.node.o $(PANIC_SRC:%.c=$(B)/pi0/%.o) -lgcc -o $@
$(B)/pi3/%.img: $(B)/pi3/%.elf $(B)/pifs-imgseal
	$(OBJCOPY64) -O binary $< $@
	$(B)/pifs-imgseal $@
$(B)/pi0/%.img: $(B)/pi0/%.elf $(B)/pifs-imgseal
	$(OBJCOPY32) -O binary $< $@
	$(B)/pifs-imgseal $@
$(B)/pifs-imgseal: tools/pifs-imgseal.c $(B)/libcore.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) tools/pifs-imgseal.c $(B)/libcore.a -o $@

PI_IMAGES := $(B)/pi3/node.img $(B)/pi0/node.img $(B)/pi3/boot.img $(B)/pi0/boot.img
.PHONY: pi
pi: $(PI_IMAGES) $(B)/pi3/panic-test.img $(B)/pi0/panic-test.img
	@for f in $(PI_IMAGES); do printf 'firmware image %-22s %7d bytes\n' $$f $$(stat -c %s $$f); done
