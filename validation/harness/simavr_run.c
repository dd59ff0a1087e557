/* ebnn-automl validation: a libsimavr driver for the AVR harness (port_avr.c).
 *
 *     simavr_run FIRMWARE.elf MCU FREQ_HZ < images.u8
 *
 * Serves the harness's channel through the GPIOR registers: GPIOR0 writes go to stdout, GPIOR1 reads
 * take the next byte of stdin, GPIOR2 reads say whether input remains, GPIOR2 writes are marks (1:
 * before an inference, 2: after it; the driver prints "K <cycles>" for each inference) or the exit
 * (0x80 | code). simavr counts cycles exactly. Exit status: the program's code; 5 if the core crashed
 * or stopped without exiting. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <simavr/sim_avr.h>
#include <simavr/sim_elf.h>
#include <simavr/sim_io.h>

#define GPIOR0_ADDR 0x3E
#define GPIOR1_ADDR 0x4A
#define GPIOR2_ADDR 0x4B

static int exit_code = -1;
static avr_cycle_count_t mark_begin;

static void console_write(avr_t *avr, avr_io_addr_t addr, uint8_t v, void *param)
{
    (void)avr, (void)addr, (void)param;
    putchar(v);
}

static uint8_t input_read(avr_t *avr, avr_io_addr_t addr, void *param)
{
    int c = getchar();
    (void)avr, (void)addr, (void)param;
    return c == EOF ? 0 : (uint8_t)c;
}

static uint8_t input_left(avr_t *avr, avr_io_addr_t addr, void *param)
{
    int c = getchar();
    (void)avr, (void)addr, (void)param;
    if (c == EOF) {
        return 0;
    }
    ungetc(c, stdin);
    return 1;
}

static void control_write(avr_t *avr, avr_io_addr_t addr, uint8_t v, void *param)
{
    (void)addr, (void)param;
    if (v & 0x80) {
        exit_code = v & 0x7f;
    } else if (v == 1) {
        mark_begin = avr->cycle;
    } else if (v == 2) {
        printf("K %llu\n", (unsigned long long)(avr->cycle - mark_begin));
    }
}

int main(int argc, char **argv)
{
    elf_firmware_t fw;
    avr_t *avr;
    int state = cpu_Running;
    if (argc != 4) {
        fprintf(stderr, "usage: simavr_run FIRMWARE.elf MCU FREQ_HZ < input\n");
        return 2;
    }
    memset(&fw, 0, sizeof fw);
    if (elf_read_firmware(argv[1], &fw) != 0) {
        fprintf(stderr, "simavr_run: cannot read %s\n", argv[1]);
        return 2;
    }
    avr = avr_make_mcu_by_name(argv[2]);
    if (!avr) {
        fprintf(stderr, "simavr_run: unknown MCU %s\n", argv[2]);
        return 2;
    }
    avr_init(avr);
    avr->log = 0;
    avr_load_firmware(avr, &fw);
    avr->frequency = (uint32_t)strtoul(argv[3], NULL, 10);
    avr_register_io_write(avr, GPIOR0_ADDR, console_write, NULL);
    avr_register_io_read(avr, GPIOR1_ADDR, input_read, NULL);
    avr_register_io_read(avr, GPIOR2_ADDR, input_left, NULL);
    avr_register_io_write(avr, GPIOR2_ADDR, control_write, NULL);
    while (exit_code < 0 && state != cpu_Done && state != cpu_Crashed) {
        state = avr_run(avr);
    }
    fflush(stdout);
    if (exit_code < 0) {
        fprintf(stderr, "simavr_run: the core %s at cycle %llu without exiting\n",
                state == cpu_Crashed ? "crashed" : "stopped", (unsigned long long)avr->cycle);
        return 5;
    }
    return exit_code;
}
