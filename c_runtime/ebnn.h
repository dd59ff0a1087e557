/*
 * ebnn runtime: integer-only fused kernels of embedded binarized neural networks.
 * C99, no malloc, no float, fixed-width types. Portable to AVR (16-bit int), Cortex-M0/M4, x86-32
 * and the host.
 *
 * Bit conventions (the NumPy reference, ebnn_core/bits.py, follows the same):
 *  - A binary value is one bit: 1 means +1, 0 means -1; sign(x) = +1 if x >= 0, so sign(0) is bit 1.
 *  - A vector of n values is a bit stream: value i is bit (i % 32) of 32-bit word i / 32, least
 *    significant bit first; a stream occupies ceil(n / 32) words and its unused high bits are 0.
 *  - A conv activation of shape (C, H, W) is streamed in HWC order: value (c, y, x) is bit
 *    (y * W + x) * C + c, so one kernel row of K taps over C channels is K * C contiguous bits.
 *  - Binary layers store their weights as bit streams, one per filter or row, each padded to whole
 *    words: conv filter f (F, C, K, K) starts at word f * ceil(K * K * C / 32) and holds tap
 *    (ky, kx), channel c at bit (ky * K + kx) * C + c (the window order of the HWC input, so a
 *    window gathered row by row lines up with it); dense row u (U, N) starts at word u * ceil(N / 32)
 *    and holds column n at bit n, n indexing the input stream.
 *  - A first layer on raw pixels reads the caller's uint8 input in CHW order: pixel (c, y, x) is
 *    byte (c * H + y) * W + x. It sums pixels through subset-sum tables: for a chunk of up to 4
 *    pixels the sums of all its subsets are computed once, and each output adds the entry its weight
 *    bits for the chunk (bit i = 1: pixel i has weight +1) select; S = 2 * that - (sum of all pixels).
 *    Conv on pixels: each kernel row's K * C taps, in (kx, c) order, form chunks of 4 (the last one
 *    shorter); byte (f * K + ky) * ceil(K * C / 4) + r holds filter f's bits for chunk r of row ky.
 *    Dense on pixels (column n = byte index n): word g * ceil(N / 4) + q holds, in bits 4j .. 4j+3,
 *    the weights of output 8g + j for pixels 4q .. 4q+3 (missing outputs and pixels are 0).
 *  - Padding is zero: a tap outside the input contributes nothing to the sum (it is skipped).
 *  - A block's output bit is (OR over its pool window of (S >= T)) XOR flip, where S is the
 *    integer sum of one output position and channel, T the channel's threshold (int16 or int32).
 *  - The classifier's scores are scale[c] * S[c] + offset[c] in int32; the prediction is the first
 *    index of the largest score.
 */
#ifndef EBNN_H
#define EBNN_H

#include <stddef.h>
#include <stdint.h>

#include "ebnn_config.h" /* generated per model: EBNN_PARAM, EBNN_POPCOUNT_SWAR, EBNN_WINDOW_WORDS */

#ifndef EBNN_PARAM
#define EBNN_PARAM /* qualifier of constant parameters: __flash on AVR when they live in flash */
#endif

typedef enum {
    EBNN_OK = 0,
    EBNN_E_NULL = -1, /* a required pointer was NULL */
    EBNN_E_SIZE = -2  /* a binary conv window larger than EBNN_WINDOW_WORDS words */
} ebnn_status;

enum { EBNN_FUSION_RECOMPUTE = 0, EBNN_FUSION_ROWBUFFER = 1, EBNN_FUSION_UNFUSED = 2 };

typedef struct {
    uint16_t c, h, w;
} ebnn_dims;

/* Where a block reads its input: raw uint8 pixels (CHW) or a packed bit stream (HWC). */
typedef struct {
    const uint8_t *pixels; /* non-NULL: raw pixels */
    const uint32_t *bits;  /* otherwise: packed bits */
} ebnn_input;

typedef struct {
    ebnn_dims in;   /* input channels, height, width */
    ebnn_dims conv; /* filters and conv output size before pooling */
    ebnn_dims out;  /* filters and block output size */
    uint8_t kernel, stride, padding;
    uint8_t pool, pool_stride, fusion; /* pool 0: none */
    const EBNN_PARAM uint32_t *weights; /* on a bit stream: each filter's k * k * C bits padded to words */
    const EBNN_PARAM uint8_t *chunks;   /* on raw pixels: the chunk bytes (see above); weights is NULL */
    const EBNN_PARAM int16_t *thr16;    /* exactly one of thr16 / thr32 is non-NULL */
    const EBNN_PARAM int32_t *thr32;
    const EBNN_PARAM uint32_t *flips;
} ebnn_conv_params;

typedef struct {
    uint32_t n_in;
    uint16_t n_out;
    const EBNN_PARAM uint32_t *weights; /* rows padded to words; on raw pixels grouped (see above) */
    const EBNN_PARAM int16_t *thr16;
    const EBNN_PARAM int32_t *thr32;
    const EBNN_PARAM uint32_t *flips;
} ebnn_dense_params;

typedef struct {
    uint32_t n_in;
    uint16_t classes;
    const EBNN_PARAM uint32_t *weights;
    const EBNN_PARAM int32_t *scale;
    const EBNN_PARAM int32_t *offset;
} ebnn_classifier_params;

/* Words of scratch a conv block needs (the host planner computes the same, ebnn_core/resources.py). */
uint32_t ebnn_conv_scratch_words(const ebnn_conv_params *p);

/* Binarize raw pixels (pixel >= threshold is +1) into an HWC bit stream. */
void ebnn_pack_binary_input(const uint8_t *pixels, ebnn_dims d, uint8_t threshold, uint32_t *out);

/* Fused blocks: out receives the packed output stream; scratch is used by rowbuffer/unfused pools.
 * An input bit stream (and scratch) must be followed by 8 readable bytes: kernels read up to 8 bytes
 * from the first byte of a run of bits (the generated arena ends with that slack). */
ebnn_status ebnn_conv_block(const ebnn_conv_params *p, ebnn_input in, uint32_t *out, uint32_t *scratch);
ebnn_status ebnn_dense_block(const ebnn_dense_params *p, ebnn_input in, uint32_t *out);

/* Integer class scores (written to scores when non-NULL) and the index of the largest; < 0 on error. */
int ebnn_classifier(const ebnn_classifier_params *p, ebnn_input in, int32_t *scores);

#endif /* EBNN_H */
