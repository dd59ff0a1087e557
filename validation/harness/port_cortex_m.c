/* Cortex-M port: vector table, reset handler (copy .data, zero .bss), ARM semihosting for I/O.
 * Thumb-1 only, so the same file runs on Cortex-M0 and Cortex-M4. Input: the host file images.u8. */
#include <stdint.h>

#include "harness_port.h"

extern uint32_t __data_load[], __data_start[], __data_end[], __bss_start[], __harness_end[], __stack_top[];
int main(void);

/* One semihosting call (bkpt 0xab); the emulator (QEMU, or unicorn's hook on this function) serves it. */
int __attribute__((noinline)) harness_semihost(int op, const void *arg)
{
    register int r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

void __attribute__((noinline)) harness_mark(int which)
{
    __asm__ volatile("" : : "r"(which) : "memory");
}

void port_mark(int which)
{
    harness_mark(which);
}

/* The port's own state lives outside the model's static RAM (section .harness_bss, zeroed at reset). */
static int input_plus1 __attribute__((section(".harness_bss")));

uint32_t port_read(uint8_t *buf, uint32_t n)
{
    uint32_t args[3];
    if (input_plus1 == 0) {
        static const char name[] = "images.u8";
        args[0] = (uint32_t)name;
        args[1] = 1; /* "rb" */
        args[2] = sizeof name - 1;
        input_plus1 = harness_semihost(0x01, args) + 1; /* SYS_OPEN */
        if (input_plus1 <= 0) {
            return 0;
        }
    }
    args[0] = (uint32_t)(input_plus1 - 1);
    args[1] = (uint32_t)buf;
    args[2] = n;
    return n - (uint32_t)harness_semihost(0x06, args); /* SYS_READ returns the bytes not read */
}

void port_write(const char *s, uint32_t n) /* s is NUL-terminated */
{
    (void)n;
    harness_semihost(0x04, s); /* SYS_WRITE0 */
}

void port_exit(int code)
{
    uint32_t args[2];
    args[0] = 0x20026u; /* ADP_Stopped_ApplicationExit */
    args[1] = (uint32_t)code;
    for (;;) {
        harness_semihost(0x20, args); /* SYS_EXIT_EXTENDED */
    }
}

void reset_handler(void)
{
    uint32_t *src = __data_load, *dst = __data_start;
    while (dst < __data_end) {
        *dst++ = *src++;
    }
    for (dst = __bss_start; dst < __harness_end; ++dst) {
        *dst = 0;
    }
    port_exit(main());
}

void fault_handler(void)
{
    port_exit(4);
}

__attribute__((section(".vectors"), used)) void *const harness_vectors[16] = {
    (void *)__stack_top, (void *)reset_handler, (void *)fault_handler, (void *)fault_handler,
    (void *)fault_handler, (void *)fault_handler, (void *)fault_handler, 0, 0, 0, 0,
    (void *)fault_handler, (void *)fault_handler, 0, (void *)fault_handler, (void *)fault_handler,
};
