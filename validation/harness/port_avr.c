/* AVR port (ATmega328P under the project's simavr driver, validation/harness/simavr_run.c): the
 * general-purpose I/O registers are the channel. GPIOR0 written: a console byte. GPIOR1 read: the
 * next input byte. GPIOR2 read: 1 while input remains; written: 1/2 inference marks (the driver
 * records the cycle counter), 0x80 | code: exit. avr-libc's start-up code copies .data and zeroes .bss. */
#include <avr/io.h>
#include <stdint.h>

#include "harness_port.h"

void port_mark(int which)
{
    GPIOR2 = (uint8_t)which;
}

uint32_t port_read(uint8_t *buf, uint32_t n)
{
    uint32_t i;
    for (i = 0; i < n && GPIOR2; ++i) {
        buf[i] = GPIOR1;
    }
    return i;
}

void port_write(const char *s, uint32_t n)
{
    uint32_t i;
    for (i = 0; i < n; ++i) {
        GPIOR0 = (uint8_t)s[i];
    }
}

void port_exit(int code)
{
    for (;;) {
        GPIOR2 = (uint8_t)(0x80 | (code & 0x7f));
    }
}
