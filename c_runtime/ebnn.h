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
 *  - Conv weights (F, C, K, K) are streamed per filter in (ky, kx, c) order without padding:
 *    filter f, tap (ky, kx), channel c is bit ((f * K + ky) * K + kx) * C + c.
 *  - Dense weights (U, N) are streamed row after row: bit u * N + n, n indexing the input stream.
 *  - A first layer on raw pixels reads the caller's uint8 input in CHW order: pixel (c, y, x) is
 *    byte (c * H + y) * W + x; a dense first layer's column n is that byte index. Its taps are
 *    numbered in (ky, kx, c) order for a conv, by byte index for a dense layer, and its weights are
 *    stored grouped rather than streamed: word g * ceil(taps / 4) + q holds, in bits 4j .. 4j+3, the
 *    weights of output 8g + j for taps 4q .. 4q+3 (bit 1 = +1; missing outputs and taps are 0). The
 *    kernel sums 4 pixels' 16 subset sums once and every output of the group looks its sum up.
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

#include "ebnn_config.h" /* generated per model: EBNN_PARAM, EBNN_POPCOUNT_SWAR */

#ifndef EBNN_PARAM
#define EBNN_PARAM /* qualifier of constant parameters: __flash on AVR when they live in flash */
#endif

typedef enum {
    EBNN_OK = 0,
    EBNN_E_NULL = -1 /* a required pointer was NULL */
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
    const EBNN_PARAM uint32_t *weights;
    const EBNN_PARAM int16_t *thr16; /* exactly one of thr16 / thr32 is non-NULL */
    const EBNN_PARAM int32_t *thr32;
    const EBNN_PARAM uint32_t *flips;
} ebnn_conv_params;

typedef struct {
    uint32_t n_in;
    uint16_t n_out;
    const EBNN_PARAM uint32_t *weights;
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

/* Fused blocks: out receives the packed output stream; scratch is used by rowbuffer/unfused pools. */
ebnn_status ebnn_conv_block(const ebnn_conv_params *p, ebnn_input in, uint32_t *out, uint32_t *scratch);
ebnn_status ebnn_dense_block(const ebnn_dense_params *p, ebnn_input in, uint32_t *out);

/* Integer class scores (written to scores when non-NULL) and the index of the largest; < 0 on error. */
int ebnn_classifier(const ebnn_classifier_params *p, ebnn_input in, int32_t *scores);

#endif /* EBNN_H */
