/* Lakemont (the Curie's x86 core) port: a static i386 program, Linux system calls through int 0x80,
 * run under qemu-i386 or unicorn. Input on stdin, output on stdout. */
#include <stdint.h>

#include "harness_port.h"

int main(void);

__asm__(".section .text.start\n"
        ".globl _start\n"
        "_start:\n"
        "    mov $__stack_top, %esp\n"
        "    call harness_start\n"
        "    hlt\n"
        ".text\n");

static int harness_syscall(int nr, int a, int b, int c)
{
    int r;
    __asm__ volatile("int $0x80" : "=a"(r) : "a"(nr), "b"(a), "c"(b), "d"(c) : "memory");
    return r;
}

void __attribute__((noinline)) harness_mark(int which)
{
    __asm__ volatile("" : : "r"(which) : "memory");
}

void port_mark(int which)
{
    harness_mark(which);
}

uint32_t port_read(uint8_t *buf, uint32_t n)
{
    uint32_t got = 0;
    while (got < n) {
        const int r = harness_syscall(3, 0, (int)(buf + got), (int)(n - got)); /* read(0, ...) */
        if (r <= 0) {
            break;
        }
        got += (uint32_t)r;
    }
    return got;
}

void port_write(const char *s, uint32_t n)
{
    harness_syscall(4, 1, (int)s, (int)n); /* write(1, ...) */
}

void port_exit(int code)
{
    for (;;) {
        harness_syscall(1, code, 0, 0); /* exit */
    }
}

void __attribute__((used)) harness_start(void)
{
    port_exit(main());
}
