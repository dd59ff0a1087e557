/* The baseline of bench/bench_c.py: the runtime API of c_runtime/ebnn.h implemented the way the
 * original eBNN C code worked, one bit at a time, each bit found with a divide and a modulo, every
 * pool window recomputing its conv outputs, no word-wide XNOR-popcount. Same results, bit for bit. */
#include "ebnn.h"

static int nv_bit(const uint32_t *s, long i)
{
    return (int)((s[i / 32] >> (i % 32)) & 1u);
}

static int nv_pbit(const EBNN_PARAM uint32_t *s, long i)
{
    return (int)((s[i / 32] >> (i % 32)) & 1u);
}

/* A dense layer on raw pixels stores its weights grouped (see ebnn.h): output o, pixel t of taps. */
static int nv_pixel_weight(const EBNN_PARAM uint32_t *w, long o, long t, long taps)
{
    long nq = (taps + 3) / 4;
    return (int)((w[(o / 8) * nq + t / 4] >> (4 * (o % 8) + t % 4)) & 1u);
}

/* A conv on raw pixels: a byte per (filter, kernel row, chunk of 4 of the row's k * c taps). */
static int nv_pixel_conv_weight(const EBNN_PARAM uint8_t *b, long f, long ky, long t, long k, long c)
{
    long cq = (k * c + 3) / 4;
    return (int)((b[(f * k + ky) * cq + t / 4] >> (t % 4)) & 1u);
}

/* Binary layers pad each filter or row to whole words. */
static long nv_row_bits(long n)
{
    return (n + 31) / 32 * 32;
}

static void nv_put(uint32_t *s, long i, int v)
{
    if (v) {
        s[i / 32] |= (uint32_t)1 << (i % 32);
    } else {
        s[i / 32] &= ~((uint32_t)1 << (i % 32));
    }
}

static int32_t nv_value(ebnn_input in, ebnn_dims d, long c, long y, long x)
{
    if (in.pixels) {
        return (int32_t)in.pixels[(c * d.h + y) * d.w + x];
    }
    return nv_bit(in.bits, (y * d.w + x) * d.c + c) ? 1 : -1;
}

static int32_t nv_thr(const EBNN_PARAM int16_t *t16, const EBNN_PARAM int32_t *t32, long f)
{
    return t16 ? (int32_t)t16[f] : t32[f];
}

static int nv_conv_fires(const ebnn_conv_params *p, ebnn_input in, long oy, long ox, long f)
{
    long ky, kx, c, k = p->kernel;
    int32_t s = 0;
    for (ky = 0; ky < k; ++ky) {
        for (kx = 0; kx < k; ++kx) {
            long iy = oy * p->stride - p->padding + ky, ix = ox * p->stride - p->padding + kx;
            if (iy < 0 || ix < 0 || iy >= p->in.h || ix >= p->in.w) {
                continue;
            }
            for (c = 0; c < p->in.c; ++c) {
                int32_t v = nv_value(in, p->in, c, iy, ix);
                long tap = (ky * k + kx) * p->in.c + c;
                int bit = in.pixels ? nv_pixel_conv_weight(p->chunks, f, ky, kx * p->in.c + c, k, p->in.c)
                                    : nv_pbit(p->weights, f * nv_row_bits(k * k * p->in.c) + tap);
                s += bit ? v : -v;
            }
        }
    }
    return s >= nv_thr(p->thr16, p->thr32, f);
}

uint32_t ebnn_conv_scratch_words(const ebnn_conv_params *p)
{
    (void)p;
    return 0;
}

ebnn_status ebnn_conv_block(const ebnn_conv_params *p, ebnn_input in, uint32_t *out, uint32_t *scratch)
{
    long oy, ox, f, dy, dx;
    (void)scratch;
    for (oy = 0; oy < p->out.h; ++oy) {
        for (ox = 0; ox < p->out.w; ++ox) {
            for (f = 0; f < p->out.c; ++f) {
                int fire = 0;
                if (!p->pool) {
                    fire = nv_conv_fires(p, in, oy, ox, f);
                } else {
                    for (dy = 0; dy < p->pool; ++dy) {
                        for (dx = 0; dx < p->pool; ++dx) {
                            fire |= nv_conv_fires(p, in, oy * p->pool_stride + dy, ox * p->pool_stride + dx, f);
                        }
                    }
                }
                nv_put(out, (oy * p->out.w + ox) * p->out.c + f, fire ^ nv_pbit(p->flips, f));
            }
        }
    }
    return EBNN_OK;
}

static int32_t nv_row(ebnn_input in, const EBNN_PARAM uint32_t *w, long row, long n)
{
    long i;
    int32_t s = 0;
    for (i = 0; i < n; ++i) {
        int32_t v = in.pixels ? (int32_t)in.pixels[i] : (nv_bit(in.bits, i) ? 1 : -1);
        int bit = in.pixels ? nv_pixel_weight(w, row, i, n) : nv_pbit(w, row * nv_row_bits(n) + i);
        s += bit ? v : -v;
    }
    return s;
}

ebnn_status ebnn_dense_block(const ebnn_dense_params *p, ebnn_input in, uint32_t *out)
{
    long u;
    for (u = 0; u < p->n_out; ++u) {
        int32_t s = nv_row(in, p->weights, u, (long)p->n_in);
        nv_put(out, u, (s >= nv_thr(p->thr16, p->thr32, u)) ^ nv_pbit(p->flips, u));
    }
    return EBNN_OK;
}

int ebnn_classifier(const ebnn_classifier_params *p, ebnn_input in, int32_t *scores)
{
    long c;
    int best = 0;
    int32_t best_score = 0;
    for (c = 0; c < p->classes; ++c) {
        int32_t score = p->scale[c] * nv_row(in, p->weights, c, (long)p->n_in) + p->offset[c];
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
    long y, x, c;
    for (y = 0; y < d.h; ++y) {
        for (x = 0; x < d.w; ++x) {
            for (c = 0; c < d.c; ++c) {
                nv_put(out, (y * d.w + x) * d.c + c, pixels[(c * d.h + y) * d.w + x] >= threshold);
            }
        }
    }
}
