/*
 * ebnn-automl validation harness: runs the generated model on images from the host and reports, per
 * image, the prediction, the class scores and the painted stack peak of the inference call.
 *
 * Protocol (text lines on the port's output channel):
 *   R <prediction> <score 0> ... <score N-1> <stack bytes>   one per image read
 *   D <images> <peak stack bytes> <bottom touched 0/1> <stack available to the call>
 * The stack figure is what ebnn_predict_scores uses below the caller's stack pointer (the caller's
 * own frame is the user's and is not counted); it is measured by painting the stack allowance and a
 * guard band below it with a pattern before each call and finding the lowest overwritten byte after
 * it. A write into the guard band (or its top byte) means the call ran past its allowance: on the
 * device, that is static data.
 * A port (port_*.c) supplies reading, writing, marks, exit and the current stack pointer.
 */
#include <stdint.h>

#include "model.h"
#include "harness_port.h"

#define PAINT 0xA5u

extern uint8_t __ebnn_stack_low[]; /* lowest byte of the stack allowance */
extern uint8_t __ebnn_guard_low[]; /* a painted guard band below it, where static data is on the device */

/* The model's input buffer: the memory model counts it (input_bytes). */
uint8_t ebnn_input_image[EBNN_INPUT_SIZE];

/* Paint from the bottom of the allowance up to a margin below this function's own frame. */
static void __attribute__((noinline)) harness_paint(void)
{
    volatile uint8_t here = 0;
    uint8_t *p = __ebnn_guard_low;
    const uintptr_t top = (uintptr_t)&here - 48u;
    while ((uintptr_t)p < top) {
        *p++ = PAINT;
    }
}

/* Lowest overwritten byte of the allowance, as an address. */
static uintptr_t __attribute__((noinline)) harness_low_water(void)
{
    const uint8_t *p = __ebnn_guard_low;
    while (*p == PAINT) {
        ++p;
    }
    return (uintptr_t)p;
}

static void put_char(char c) /* no string literals: on AVR they would take static RAM */
{
    char s[2];
    s[0] = c;
    s[1] = 0;
    port_write(s, 1);
}

static void put_int(int32_t v)
{
    char buf[13];
    int i = 12;
    uint32_t u = v < 0 ? 0u - (uint32_t)v : (uint32_t)v;
    buf[i] = 0;
    do {
        buf[--i] = (char)('0' + u % 10u);
        u /= 10u;
    } while (u);
    if (v < 0) {
        buf[--i] = '-';
    }
    buf[--i] = ' ';
    port_write(buf + i, (uint32_t)(12 - i));
}

int main(void)
{
    int32_t scores[EBNN_NUM_CLASSES];
    uint32_t images = 0, peak = 0, available = 0;
    int bottom = 0;
    for (;;) {
        uintptr_t sp, low;
        int pred, k;
        if (port_read(ebnn_input_image, EBNN_INPUT_SIZE) != EBNN_INPUT_SIZE) {
            break;
        }
        harness_paint();
        sp = PORT_SP();
        port_mark(1);
        pred = ebnn_predict_scores(ebnn_input_image, scores);
        port_mark(2);
        low = harness_low_water();
        available = (uint32_t)(sp - (uintptr_t)__ebnn_stack_low);
        if (low <= (uintptr_t)__ebnn_stack_low) {
            bottom = 1; /* the call reached the bottom of its allowance or the guard band: static data on a device */
        }
        if (sp - low > peak) {
            peak = (uint32_t)(sp - low);
        }
        put_char('R');
        put_int(pred);
        for (k = 0; k < EBNN_NUM_CLASSES; ++k) {
            put_int(scores[k]);
        }
        put_int((int32_t)(sp - low));
        put_char('\n');
        ++images;
    }
    put_char('D');
    put_int((int32_t)images);
    put_int((int32_t)peak);
    put_int(bottom);
    put_int((int32_t)available);
    put_char('\n');
    port_exit(bottom ? 3 : 0);
    return 0;
}
