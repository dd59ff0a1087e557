/* ebnn runtime kernels. Conventions: see ebnn.h. */
#include "ebnn.h"

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

static int ebnn_param_bit(const EBNN_PARAM uint32_t *s, uint32_t i)
{
    return (int)((s[i >> 5] >> (i & 31u)) & 1u);
}

static void ebnn_set_bit(uint32_t *s, uint32_t i)
{
    s[i >> 5] |= (uint32_t)1 << (i & 31u);
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

/* Sum of n raw pixels (stride bytes apart) times ±1 weights, the weights a run starting at wpos.
 * 32 weight bits are fetched at a time; each pixel is added or subtracted without a branch. */
static int32_t ebnn_dot_pixels(const uint8_t *px, uint32_t stride, const EBNN_PARAM uint32_t *w, uint32_t wpos,
                               uint32_t n)
{
    int32_t s = 0;
    while (n) {
        const uint32_t take = n < 32u ? n : 32u;
        uint32_t bits = ebnn_param_bits_at(w, wpos, take), i;
        for (i = 0; i < take; ++i, bits >>= 1, px += stride) {
            const int32_t m = -(int32_t)(bits & 1u); /* 0 for -1, all ones for +1 */
            s += ((int32_t)*px ^ ~m) - ~m;          /* +pixel when the bit is 1, -pixel when 0 */
        }
        n -= take;
        wpos += take;
    }
    return s;
}

static int ebnn_ge_threshold(const EBNN_PARAM int16_t *t16, const EBNN_PARAM int32_t *t32, uint16_t f, int32_t s)
{
    return t16 ? s >= (int32_t)t16[f] : s >= t32[f];
}

/* ---- conv ----------------------------------------------------------------------------------- */

/* S >= T for conv output (oy, ox) of filter f, before pooling. */
static int ebnn_conv_fires(const ebnn_conv_params *p, ebnn_input in, uint16_t oy, uint16_t ox, uint16_t f)
{
    const uint32_t k = p->kernel, c = p->in.c, h = p->in.h, w = p->in.w;
    const int32_t iy0 = (int32_t)oy * p->stride - p->padding;
    const int32_t ix0 = (int32_t)ox * p->stride - p->padding;
    const uint32_t kx_lo = ix0 < 0 ? (uint32_t)(-ix0) : 0u;
    const uint32_t kx_hi = ix0 + (int32_t)k > (int32_t)w ? (uint32_t)((int32_t)w - ix0) : k;
    const uint32_t ky_lo = iy0 < 0 ? (uint32_t)(-iy0) : 0u;
    const uint32_t ky_hi = iy0 + (int32_t)k > (int32_t)h ? (uint32_t)((int32_t)h - iy0) : k;
    int32_t s = 0;
    uint32_t ky;
    for (ky = ky_lo; ky < ky_hi; ++ky) {
        const uint32_t iy = (uint32_t)(iy0 + (int32_t)ky);
        const uint32_t wpos = (((uint32_t)f * k + ky) * k + kx_lo) * c;
        if (in.pixels) {
            const uint8_t *row = in.pixels + iy * w + (uint32_t)(ix0 + (int32_t)kx_lo);
            if (c == 1u) { /* one channel: the kernel row is kx_hi - kx_lo contiguous pixels */
                s += ebnn_dot_pixels(row, 1u, p->weights, wpos, kx_hi - kx_lo);
            } else { /* weights run over (kx, c); pixels of one tap are h * w bytes apart per channel */
                uint32_t kx;
                for (kx = kx_lo; kx < kx_hi; ++kx) {
                    s += ebnn_dot_pixels(row + (kx - kx_lo), h * w, p->weights, wpos + (kx - kx_lo) * c, c);
                }
            }
        } else {
            const uint32_t xpos = (iy * w + (uint32_t)(ix0 + (int32_t)kx_lo)) * c;
            s += ebnn_dot_bits(in.bits, xpos, p->weights, wpos, (kx_hi - kx_lo) * c);
        }
    }
    return ebnn_ge_threshold(p->thr16, p->thr32, f, s);
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
    const uint32_t fw = p->conv.c, rowbits = (uint32_t)p->conv.w * fw;
    uint16_t x, f;
    for (x = 0; x < cols; ++x) {
        for (f = 0; f < p->conv.c; ++f) {
            const uint32_t i = slot * rowbits + (uint32_t)x * fw + f;
            if (ebnn_conv_fires(p, in, y, x, f)) {
                buf[i >> 5] |= (uint32_t)1 << (i & 31u);
            } else {
                buf[i >> 5] &= ~((uint32_t)1 << (i & 31u));
            }
        }
    }
}

ebnn_status ebnn_conv_block(const ebnn_conv_params *p, ebnn_input in, uint32_t *out, uint32_t *scratch)
{
    uint16_t nf, ho, wo, oy, ox, f;
    if (!p || !out || (!in.pixels && !in.bits) || (ebnn_conv_scratch_words(p) && !scratch)) {
        return EBNN_E_NULL;
    }
    nf = p->out.c;
    ho = p->out.h;
    wo = p->out.w;
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
                for (f = 0; f < nf; ++f) {
                    int fire = 0;
                    if (!p->pool) {
                        fire = ebnn_conv_fires(p, in, oy, ox, f);
                    } else if (p->fusion == EBNN_FUSION_RECOMPUTE) {
                        uint16_t dy, dx;
                        for (dy = 0; dy < p->pool && !fire; ++dy) {
                            for (dx = 0; dx < p->pool && !fire; ++dx) {
                                fire = ebnn_conv_fires(p, in, (uint16_t)(oy * p->pool_stride + dy),
                                                       (uint16_t)(ox * p->pool_stride + dx), f);
                            }
                        }
                    } else {
                        fire = ebnn_pool_from(p, scratch, p->fusion == EBNN_FUSION_ROWBUFFER ? p->pool : p->conv.h,
                                              oy, ox, f);
                    }
                    if (fire ^ ebnn_param_bit(p->flips, f)) {
                        ebnn_set_bit(out, ((uint32_t)oy * wo + ox) * nf + f);
                    }
                }
            }
        }
    }
    return EBNN_OK;
}

/* ---- dense, classifier, input ------------------------------------------------------------- */

static int32_t ebnn_row_sum(ebnn_input in, const EBNN_PARAM uint32_t *w, uint32_t row, uint32_t n)
{
    return in.pixels ? ebnn_dot_pixels(in.pixels, 1u, w, row * n, n) : ebnn_dot_bits(in.bits, 0u, w, row * n, n);
}

ebnn_status ebnn_dense_block(const ebnn_dense_params *p, ebnn_input in, uint32_t *out)
{
    uint16_t u;
    if (!p || !out || (!in.pixels && !in.bits)) {
        return EBNN_E_NULL;
    }
    ebnn_clear_words(out, p->n_out);
    for (u = 0; u < p->n_out; ++u) {
        const int32_t s = ebnn_row_sum(in, p->weights, u, p->n_in);
        if (ebnn_ge_threshold(p->thr16, p->thr32, u, s) ^ ebnn_param_bit(p->flips, u)) {
            ebnn_set_bit(out, u);
        }
    }
    return EBNN_OK;
}

int ebnn_classifier(const ebnn_classifier_params *p, ebnn_input in, int32_t *scores)
{
    uint16_t c;
    int best = 0;
    int32_t best_score = 0;
    if (!p || (!in.pixels && !in.bits)) {
        return EBNN_E_NULL;
    }
    for (c = 0; c < p->classes; ++c) {
        const int32_t score = p->scale[c] * ebnn_row_sum(in, p->weights, c, p->n_in) + p->offset[c];
        if (scores) {
            scores[c] = score;
        }
        if (c == 0 || score > best_score) {
            best = (int)c;
            best_score = score;
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
