/* The port layer of the validation harness: one port_*.c per device family. */
#ifndef HARNESS_PORT_H
#define HARNESS_PORT_H

#include <stdint.h>

uint32_t port_read(uint8_t *buf, uint32_t n); /* bytes read: n, or fewer at the end of the input */
void port_write(const char *s, uint32_t n);
void port_mark(int which);                    /* 1 before an inference, 2 after it */
void port_exit(int code) __attribute__((noreturn));

#if defined(__arm__)
#define PORT_SP() ({ uintptr_t sp_; __asm__ volatile("mov %0, sp" : "=r"(sp_)); sp_; })
#elif defined(__i386__)
#define PORT_SP() ({ uintptr_t sp_; __asm__ volatile("mov %%esp, %0" : "=r"(sp_)); sp_; })
#elif defined(__AVR__)
#include <avr/io.h>
#define PORT_SP() ((uintptr_t)SP)
#else
#error "no validation port for this target"
#endif

#endif
