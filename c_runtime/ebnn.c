/* ebnn runtime kernels. Conventions: see ebnn.h. */
#include "ebnn.h"

#define EBNN_GROUP 8u /* outputs computed together: one 32-bit word holds a group's 4-bit chunks */
#if defined(EBNN_PIXEL_GROUP) && EBNN_PIXEL_GROUP != 8
#error "the generated weights use a pixel group size this runtime does not implement"
#endif
#ifndef EBNN_CONV_PASS
#define EBNN_CONV_PASS 32u /* conv filters computed per pass over a window (a multiple of EBNN_GROUP, <= 32) */
#endif

/* ---- popcount, chosen per target ------------------------------------------------------------ */
#if defined(EBNN_POPCOUNT_SWAR) && EBNN_POPCOUNT_SWAR
/* Cores without a popcount instruction (Cortex-M0/M4, Lakemont): a SWAR count beats libgcc's call. */
static uint32_t ebnn_popcount(uint32_t v)
{
    v = v - ((v >> 1) & 0x55555555u);
    v = (v & 0x33333333u) + ((v >> 2) & 0x33333333u);
    v = (v + (v >> 4)) & 0x0F0F0F0Fu;
    return (v * 0x01010101u) >> 24;
}
#else
static uint32_t ebnn_popcount(uint32_t v)
{
    return (uint32_t)__builtin_popcountl((unsigned long)v); /* popcountl: int is 16 bits on AVR */
}
#endif

static uint32_t ebnn_low_mask(uint32_t n) /* n in 1..32 */
{
    return n >= 32u ? 0xFFFFFFFFu : (((uint32_t)1 << n) - 1u);
}

/* n (1..32) bits of a stream starting at bit pos; reads a second word only when the run spans it. */
static uint32_t ebnn_bits_at(const uint32_t *s, uint32_t pos, uint32_t n)
{
    uint32_t w = pos >> 5, o = pos & 31u;
    uint32_t v = s[w] >> o;
    if (o != 0u && o + n > 32u) {
        v |= s[w + 1u] << (32u - o);
    }
    return v & ebnn_low_mask(n);
}

/* The same for constant parameters (a distinct address space on AVR when they live in flash). */
static uint32_t ebnn_param_bits_at(const EBNN_PARAM uint32_t *s, uint32_t pos, uint32_t n)
{
    uint32_t w = pos >> 5, o = pos & 31u;
    uint32_t v = s[w] >> o;
    if (o != 0u && o + n > 32u) {
        v |= s[w + 1u] << (32u - o);
    }
    return v & ebnn_low_mask(n);
}

static void ebnn_set_bit(uint32_t *s, uint32_t i)
{
    s[i >> 5] |= (uint32_t)1 << (i & 31u);
}

/* OR the n (1..32) low bits of v into the stream at bit pos. */
static void ebnn_or_bits(uint32_t *s, uint32_t pos, uint32_t v, uint32_t n)
{
    const uint32_t w = pos >> 5, o = pos & 31u;
    s[w] |= v << o;
    if (o != 0u && o + n > 32u) {
        s[w + 1u] |= v >> (32u - o);
    }
}

static int ebnn_get_bit(const uint32_t *s, uint32_t i)
{
    return (int)((s[i >> 5] >> (i & 31u)) & 1u);
}

static void ebnn_clear_words(uint32_t *s, uint32_t n_bits)
{
    uint32_t i, n = (n_bits + 31u) >> 5;
    for (i = 0; i < n; ++i) {
        s[i] = 0;
    }
}

/* Sum of n products of ±1 values: x's run at xpos against w's run at wpos (XNOR-popcount). */
static int32_t ebnn_dot_bits(const uint32_t *x, uint32_t xpos, const EBNN_PARAM uint32_t *w, uint32_t wpos,
                             uint32_t n)
{
    uint32_t diff = 0, left = n;
    if (((xpos | wpos) & 31u) == 0u) { /* both aligned: whole words */
        const uint32_t *xp = x + (xpos >> 5);
        const EBNN_PARAM uint32_t *wp = w + (wpos >> 5);
        for (; left >= 32u; left -= 32u) {
            diff += ebnn_popcount(*xp++ ^ *wp++);
        }
        if (left) {
            diff += ebnn_popcount((*xp ^ *wp) & ebnn_low_mask(left));
        }
    } else if ((xpos & 31u) == 0u) { /* input aligned (dense rows): each weight word from two */
        const uint32_t *xp = x + (xpos >> 5);
        const EBNN_PARAM uint32_t *wp = w + (wpos >> 5);
        const uint32_t o = wpos & 31u;
        for (; left >= 32u; left -= 32u, ++wp) {
            diff += ebnn_popcount(*xp++ ^ ((wp[0] >> o) | (wp[1] << (32u - o))));
        }
        if (left) {
            uint32_t wv = wp[0] >> o;
            if (o + left > 32u) {
                wv |= wp[1] << (32u - o);
            }
            diff += ebnn_popcount((*xp ^ wv) & ebnn_low_mask(left));
        }
    } else {
        for (; left >= 32u; left -= 32u, xpos += 32u, wpos += 32u) {
            diff += ebnn_popcount(ebnn_bits_at(x, xpos, 32u) ^ ebnn_param_bits_at(w, wpos, 32u));
        }
        if (left) {
            diff += ebnn_popcount(ebnn_bits_at(x, xpos, left) ^ ebnn_param_bits_at(w, wpos, left));
        }
    }
    return (int32_t)n - 2 * (int32_t)diff;
}

/* ---- first layers on raw pixels: outputs in groups of EBNN_GROUP, taps in chunks of 4 ------------
 * The 16 subset sums of a chunk's 4 pixels are computed once and shared by the group: each output adds
 * the entry its 4 weight bits select (sum of the pixels whose weight is +1); then S = 2 * that - total.
 * Weights: one 32-bit word per (group, chunk), output j of the group in bits 4j..4j+3 (see ebnn.h). */
static inline void ebnn_lookup(int32_t *acc, uint32_t n, uint32_t word, const int32_t *t)
{
    switch (n) { /* unrolled: each output of the group adds the subset sum its 4 weight bits select */
    case 8: acc[7] += t[(word >> 28) & 15u]; /* fall through */
    case 7: acc[6] += t[(word >> 24) & 15u]; /* fall through */
    case 6: acc[5] += t[(word >> 20) & 15u]; /* fall through */
    case 5: acc[4] += t[(word >> 16) & 15u]; /* fall through */
    case 4: acc[3] += t[(word >> 12) & 15u]; /* fall through */
    case 3: acc[2] += t[(word >> 8) & 15u]; /* fall through */
    case 2: acc[1] += t[(word >> 4) & 15u]; /* fall through */
    default: acc[0] += t[word & 15u];
    }
}

/* The 16 subset sums of 4 pixel values; returns their total. */
static inline int32_t ebnn_table(const int32_t *v, int32_t *t)
{
    uint32_t i;
    t[0] = 0;
    t[1] = v[0];
    t[2] = v[1];
    t[3] = v[0] + v[1];
    for (i = 0; i < 4u; ++i) {
        t[4u + i] = t[i] + v[2];
    }
    for (i = 0; i < 8u; ++i) {
        t[8u + i] = t[i] + v[3];
    }
    return t[15];
}

/* One chunk of 4 pixel values for n outputs (several groups): their 16 subset sums, then each group's
 * word (groups nq words apart, chunk q) selects its outputs' sums. Returns the sum of the 4 values. */
static inline int32_t ebnn_chunk(int32_t *acc, uint32_t n, const EBNN_PARAM uint32_t *words, uint32_t nq,
                                 uint32_t q, const int32_t *v)
{
    int32_t t[16];
    uint32_t i;
    const int32_t total = ebnn_table(v, t);
    if (n <= EBNN_GROUP) {
        ebnn_lookup(acc, n, words[q], t);
    } else {
        for (i = 0; i * EBNN_GROUP < n; ++i) {
            const uint32_t left = n - i * EBNN_GROUP;
            ebnn_lookup(acc + i * EBNN_GROUP, left < EBNN_GROUP ? left : EBNN_GROUP, words[i * nq + q], t);
        }
    }
    return total;
}

/* Group sums of a dense layer (or classifier) on n_in raw pixels. */
static void ebnn_dense_pixel_sums(const uint8_t *px, uint32_t n_in, const EBNN_PARAM uint32_t *w, uint32_t g,
                                  uint32_t n, int32_t *acc)
{
    const uint32_t nq = (n_in + 3u) >> 2;
    const EBNN_PARAM uint32_t *words = w + g * nq;
    int32_t total = 0, v[4];
    uint32_t q, i, j;
    for (j = 0; j < n; ++j) {
        acc[j] = 0;
    }
    int32_t t[16];
    for (q = 0; q + 1u < nq; ++q, px += 4) {
        v[0] = px[0];
        v[1] = px[1];
        v[2] = px[2];
        v[3] = px[3];
        total += ebnn_table(v, t);
        ebnn_lookup(acc, n, words[q], t);
    }
    for (i = 0; i < 4u; ++i) { /* the last chunk may be partial */
        v[i] = q * 4u + i < n_in ? (int32_t)px[i] : 0;
    }
    total += ebnn_table(v, t);
    ebnn_lookup(acc, n, words[q], t);
    for (j = 0; j < n; ++j) {
        acc[j] = 2 * acc[j] - total;
    }
}

static int ebnn_ge_threshold(const EBNN_PARAM int16_t *t16, const EBNN_PARAM int32_t *t32, uint16_t f, int32_t s)
{
    return t16 ? s >= (int32_t)t16[f] : s >= t32[f];
}

/* ---- conv ----------------------------------------------------------------------------------- */

static uint32_t ebnn_group_size(uint32_t outputs, uint32_t g)
{
    const uint32_t left = outputs - g * EBNN_GROUP;
    return left < EBNN_GROUP ? left : EBNN_GROUP;
}

/* Sums of filters f0 .. f0 + n - 1 (f0 a multiple of EBNN_GROUP) of a conv on raw pixels at conv
 * position (oy, ox): taps in (ky, kx, c) order, zero outside the input. */
static void ebnn_conv_pixel_sums(const ebnn_conv_params *p, const uint8_t *px, uint16_t oy, uint16_t ox, uint32_t f0,
                                 uint32_t n, int32_t *acc)
{
    const uint32_t k = p->kernel, c = p->in.c, h = p->in.h, w = p->in.w, plane = h * w;
    const uint32_t nq = (k * k * c + 3u) >> 2;
    const EBNN_PARAM uint32_t *words = p->weights + (f0 / EBNN_GROUP) * nq;
    uint32_t q = 0;
    const int32_t iy0 = (int32_t)oy * p->stride - p->padding;
    const int32_t ix0 = (int32_t)ox * p->stride - p->padding;
    int32_t total = 0, v[4];
    uint32_t fill = 0, ky, kx, ch, j;
    for (j = 0; j < n; ++j) {
        acc[j] = 0;
    }
    if (c == 1u && iy0 >= 0 && ix0 >= 0 && iy0 + (int32_t)k <= (int32_t)h && ix0 + (int32_t)k <= (int32_t)w) {
        /* interior window on one channel: K rows of K contiguous pixels, no bounds to check */
        const uint8_t *row = px + (uint32_t)iy0 * w + (uint32_t)ix0;
        for (ky = 0; ky < k; ++ky, row += w) {
            for (kx = 0; kx < k; ++kx) {
                v[fill++] = row[kx];
                if (fill == 4u) {
                    total += ebnn_chunk(acc, n, words, nq, q++, v);
                    fill = 0;
                }
            }
        }
        ky = k; /* skip the general walk below */
    } else {
        ky = 0;
    }
    for (; ky < k; ++ky) {
        const int32_t iy = iy0 + (int32_t)ky;
        const int row_ok = iy >= 0 && iy < (int32_t)h;
        for (kx = 0; kx < k; ++kx) {
            const int32_t ix = ix0 + (int32_t)kx;
            const uint8_t *src = (row_ok && ix >= 0 && ix < (int32_t)w) ? px + (uint32_t)iy * w + (uint32_t)ix : NULL;
            for (ch = 0; ch < c; ++ch) {
                v[fill++] = src ? (int32_t)src[ch * plane] : 0;
                if (fill == 4u) {
                    total += ebnn_chunk(acc, n, words, nq, q++, v);
                    fill = 0;
                }
            }
        }
    }
    if (fill) {
        while (fill < 4u) {
            v[fill++] = 0;
        }
        total += ebnn_chunk(acc, n, words, nq, q, v);
    }
    for (j = 0; j < n; ++j) {
        acc[j] = 2 * acc[j] - total;
    }
}

/* Group sums of a binary conv at conv position (oy, ox): per valid kernel row one run of bits, read
 * from the input once per 32 bits and XNOR-popcounted against each filter of the group. */
static void ebnn_conv_bit_sums(const ebnn_conv_params *p, const uint32_t *x, uint16_t oy, uint16_t ox, uint32_t f0,
                               uint32_t n, int32_t *acc)
{
    const uint32_t k = p->kernel, c = p->in.c, h = p->in.h, w = p->in.w, fbits = k * k * c;
    const int32_t iy0 = (int32_t)oy * p->stride - p->padding;
    const int32_t ix0 = (int32_t)ox * p->stride - p->padding;
    const uint32_t kx_lo = ix0 < 0 ? (uint32_t)(-ix0) : 0u;
    const uint32_t kx_hi = ix0 + (int32_t)k > (int32_t)w ? (uint32_t)((int32_t)w - ix0) : k;
    const uint32_t ky_lo = iy0 < 0 ? (uint32_t)(-iy0) : 0u;
    const uint32_t ky_hi = iy0 + (int32_t)k > (int32_t)h ? (uint32_t)((int32_t)h - iy0) : k;
    const uint32_t run = (kx_hi - kx_lo) * c;
    uint32_t ky, j, off;
    for (j = 0; j < n; ++j) {
        acc[j] = 0;
    }
    for (ky = ky_lo; ky < ky_hi; ++ky) {
        const uint32_t xpos = ((uint32_t)(iy0 + (int32_t)ky) * w + (uint32_t)(ix0 + (int32_t)kx_lo)) * c;
        const uint32_t wrow = (ky * k + kx_lo) * c;
        for (off = 0; off < run; off += 32u) {
            const uint32_t take = run - off < 32u ? run - off : 32u;
            const uint32_t xb = ebnn_bits_at(x, xpos + off, take);
            uint32_t wpos = f0 * fbits + wrow + off;
            for (j = 0; j < n; ++j, wpos += fbits) {
                acc[j] += (int32_t)take - 2 * (int32_t)ebnn_popcount(xb ^ ebnn_param_bits_at(p->weights, wpos, take));
            }
        }
    }
}

static uint32_t ebnn_pass_size(uint32_t filters, uint32_t b)
{
    const uint32_t left = filters - b * EBNN_CONV_PASS;
    return left < EBNN_CONV_PASS ? left : EBNN_CONV_PASS;
}

/* Bit j set when filter b * EBNN_CONV_PASS + j fires (S >= T) at conv position (oy, ox), before pooling. */
static uint32_t ebnn_conv_fire_mask(const ebnn_conv_params *p, ebnn_input in, uint16_t oy, uint16_t ox, uint32_t b)
{
    int32_t acc[EBNN_CONV_PASS];
    const uint32_t f0 = b * EBNN_CONV_PASS, n = ebnn_pass_size(p->conv.c, b);
    uint32_t j, mask = 0;
    if (in.pixels) {
        ebnn_conv_pixel_sums(p, in.pixels, oy, ox, f0, n, acc);
    } else {
        ebnn_conv_bit_sums(p, in.bits, oy, ox, f0, n, acc);
    }
    if (p->thr16) {
        for (j = 0; j < n; ++j) {
            mask |= (uint32_t)(acc[j] >= (int32_t)p->thr16[f0 + j]) << j;
        }
    } else {
        for (j = 0; j < n; ++j) {
            mask |= (uint32_t)(acc[j] >= p->thr32[f0 + j]) << j;
        }
    }
    return mask;
}

static uint32_t ebnn_words(uint32_t bits)
{
    return (bits + 31u) >> 5;
}

uint32_t ebnn_conv_scratch_words(const ebnn_conv_params *p)
{
    if (!p->pool) {
        return 0;
    }
    if (p->fusion == EBNN_FUSION_ROWBUFFER) {
        return ebnn_words((uint32_t)p->pool * p->conv.w * p->conv.c);
    }
    if (p->fusion == EBNN_FUSION_UNFUSED) {
        return ebnn_words((uint32_t)p->conv.h * p->conv.w * p->conv.c);
    }
    return 0;
}

/* Pool from a buffer of thresholded conv bits laid out as rows of conv.w * F bits; row r at slot
 * (r % rows_held). */
static int ebnn_pool_from(const ebnn_conv_params *p, const uint32_t *buf, uint32_t rows_held, uint16_t py,
                          uint16_t px, uint16_t f)
{
    const uint32_t fw = p->conv.c, rowbits = (uint32_t)p->conv.w * fw;
    uint32_t dy, dx;
    for (dy = 0; dy < p->pool; ++dy) {
        const uint32_t r = ((uint32_t)py * p->pool_stride + dy) % rows_held;
        for (dx = 0; dx < p->pool; ++dx) {
            const uint32_t x = (uint32_t)px * p->pool_stride + dx;
            if (ebnn_get_bit(buf, r * rowbits + x * fw + f)) {
                return 1;
            }
        }
    }
    return 0;
}

/* Thresholded conv bits of conv row y, columns [0, cols), into slot `slot` of buf. */
static void ebnn_conv_row(const ebnn_conv_params *p, ebnn_input in, uint16_t y, uint16_t cols, uint32_t *buf,
                          uint32_t slot)
{
    const uint32_t fw = p->conv.c, rowbits = (uint32_t)p->conv.w * fw, passes = (fw + EBNN_CONV_PASS - 1u) / EBNN_CONV_PASS;
    uint32_t g, j;
    uint16_t x;
    for (x = 0; x < cols; ++x) {
        for (g = 0; g < passes; ++g) {
            const uint32_t mask = ebnn_conv_fire_mask(p, in, y, x, g), n = ebnn_pass_size(fw, g);
            for (j = 0; j < n; ++j) {
                const uint32_t i = slot * rowbits + (uint32_t)x * fw + g * EBNN_CONV_PASS + j;
                if ((mask >> j) & 1u) {
                    buf[i >> 5] |= (uint32_t)1 << (i & 31u);
                } else {
                    buf[i >> 5] &= ~((uint32_t)1 << (i & 31u));
                }
            }
        }
    }
}

ebnn_status ebnn_conv_block(const ebnn_conv_params *p, ebnn_input in, uint32_t *out, uint32_t *scratch)
{
    uint16_t nf, ho, wo, oy, ox, f;
    uint32_t passes;
    if (!p || !out || (!in.pixels && !in.bits) || (ebnn_conv_scratch_words(p) && !scratch)) {
        return EBNN_E_NULL;
    }
    nf = p->out.c;
    ho = p->out.h;
    wo = p->out.w;
    passes = (nf + EBNN_CONV_PASS - 1u) / EBNN_CONV_PASS;
    if (p->pool && p->fusion == EBNN_FUSION_UNFUSED) { /* the whole conv output, then pool */
        uint16_t y;
        for (y = 0; y < p->conv.h; ++y) {
            ebnn_conv_row(p, in, y, p->conv.w, scratch, y);
        }
    }
    ebnn_clear_words(out, (uint32_t)ho * wo * nf);
    {
        /* rowbuffer: rows computed so far (each conv row once, into slot row % pool) */
        uint16_t next_row = 0;
        const uint16_t cols = p->pool ? (uint16_t)((wo - 1u) * p->pool_stride + p->pool) : 0u;
        for (oy = 0; oy < ho; ++oy) {
            if (p->pool && p->fusion == EBNN_FUSION_ROWBUFFER) {
                const uint16_t last = (uint16_t)(oy * p->pool_stride + p->pool);
                for (; next_row < last; ++next_row) {
                    ebnn_conv_row(p, in, next_row, cols, scratch, next_row % p->pool);
                }
            }
            for (ox = 0; ox < wo; ++ox) {
                uint32_t g;
                for (g = 0; g < passes; ++g) {
                    const uint32_t n = ebnn_pass_size(nf, g), full = n >= 32u ? 0xFFFFFFFFu : ((uint32_t)1 << n) - 1u;
                    uint32_t mask = 0, j;
                    if (!p->pool) {
                        mask = ebnn_conv_fire_mask(p, in, oy, ox, g);
                    } else if (p->fusion == EBNN_FUSION_RECOMPUTE) { /* stop once every filter fired */
                        uint16_t dy, dx;
                        for (dy = 0; dy < p->pool && mask != full; ++dy) {
                            for (dx = 0; dx < p->pool && mask != full; ++dx) {
                                mask |= ebnn_conv_fire_mask(p, in, (uint16_t)(oy * p->pool_stride + dy),
                                                            (uint16_t)(ox * p->pool_stride + dx), g);
                            }
                        }
                    } else {
                        const uint32_t held = p->fusion == EBNN_FUSION_ROWBUFFER ? p->pool : p->conv.h;
                        for (j = 0; j < n; ++j) {
                            f = (uint16_t)(g * EBNN_CONV_PASS + j);
                            mask |= (uint32_t)ebnn_pool_from(p, scratch, held, oy, ox, f) << j;
                        }
                    }
                    mask ^= ebnn_param_bits_at(p->flips, g * EBNN_CONV_PASS, n);
                    ebnn_or_bits(out, ((uint32_t)oy * wo + ox) * nf + g * EBNN_CONV_PASS, mask, n);
                }
            }
        }
    }
    return EBNN_OK;
}

/* ---- dense, classifier, input ------------------------------------------------------------- */

ebnn_status ebnn_dense_block(const ebnn_dense_params *p, ebnn_input in, uint32_t *out)
{
    int32_t acc[EBNN_GROUP];
    uint32_t g, j;
    if (!p || !out || (!in.pixels && !in.bits)) {
        return EBNN_E_NULL;
    }
    ebnn_clear_words(out, p->n_out);
    for (g = 0; g * EBNN_GROUP < p->n_out; ++g) {
        const uint32_t n = ebnn_group_size(p->n_out, g), f0 = g * EBNN_GROUP;
        uint32_t mask = 0;
        if (in.pixels) {
            ebnn_dense_pixel_sums(in.pixels, p->n_in, p->weights, g, n, acc);
        } else {
            for (j = 0; j < n; ++j) {
                acc[j] = ebnn_dot_bits(in.bits, 0u, p->weights, (f0 + j) * p->n_in, p->n_in);
            }
        }
        for (j = 0; j < n; ++j) {
            mask |= (uint32_t)ebnn_ge_threshold(p->thr16, p->thr32, (uint16_t)(f0 + j), acc[j]) << j;
        }
        ebnn_or_bits(out, f0, mask ^ ebnn_param_bits_at(p->flips, f0, n), n);
    }
    return EBNN_OK;
}

int ebnn_classifier(const ebnn_classifier_params *p, ebnn_input in, int32_t *scores)
{
    int32_t acc[EBNN_GROUP];
    uint32_t g, j;
    int best = 0;
    int32_t best_score = 0;
    if (!p || (!in.pixels && !in.bits)) {
        return EBNN_E_NULL;
    }
    for (g = 0; g * EBNN_GROUP < p->classes; ++g) {
        const uint32_t n = ebnn_group_size(p->classes, g);
        if (in.pixels) {
            ebnn_dense_pixel_sums(in.pixels, p->n_in, p->weights, g, n, acc);
        }
        for (j = 0; j < n; ++j) {
            const uint32_t c = g * EBNN_GROUP + j;
            const int32_t s = in.pixels ? acc[j] : ebnn_dot_bits(in.bits, 0u, p->weights, c * p->n_in, p->n_in);
            const int32_t score = p->scale[c] * s + p->offset[c];
            if (scores) {
                scores[c] = score;
            }
            if (c == 0 || score > best_score) {
                best = (int)c;
                best_score = score;
            }
        }
    }
    return best;
}

void ebnn_pack_binary_input(const uint8_t *pixels, ebnn_dims d, uint8_t threshold, uint32_t *out)
{
    uint32_t y, x, c;
    ebnn_clear_words(out, (uint32_t)d.c * d.h * d.w);
    for (y = 0; y < d.h; ++y) {
        for (x = 0; x < d.w; ++x) {
            for (c = 0; c < d.c; ++c) {
                if (pixels[(c * d.h + y) * d.w + x] >= threshold) {
                    ebnn_set_bit(out, (y * d.w + x) * d.c + c);
                }
            }
        }
    }
}
