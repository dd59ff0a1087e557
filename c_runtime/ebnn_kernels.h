/*
 * ebnn runtime kernels, all static inline. Two translation units include this file: ebnn.c, which
 * wraps them as the block API of ebnn.h, and the generated model.c, whose per-layer parameter structs
 * hold constants, so the compiler specializes every kernel to its layer (dimensions, filter counts,
 * fusion, word counts) and unrolls the short loops. Conventions: ebnn.h.
 */
#ifndef EBNN_KERNELS_H
#define EBNN_KERNELS_H

#include <string.h> /* memcpy: an unaligned load without aliasing trouble */

#include "ebnn.h"

#if defined(EBNN_PIXEL_GROUP) && EBNN_PIXEL_GROUP != 8
#error "the generated weights use a pixel group size this runtime does not implement"
#endif
#define EBNN_GROUP 8u /* dense outputs on raw pixels computed together: one word holds their 4-bit chunks */
#ifndef EBNN_CONV_PASS
#define EBNN_CONV_PASS 32u /* filters (or dense outputs) per pass: a multiple of EBNN_GROUP, at most 32 */
#endif
#ifndef EBNN_POOL_EARLY_EXIT
/* 1: a recompute-pooled output stops once every filter of the pass fired: faster on average, but the time
 * then depends on the data. 0 (default): constant time per inference, which the latency model predicts. */
#define EBNN_POOL_EARLY_EXIT 0
#endif
#ifndef EBNN_WINDOW_WORDS
#define EBNN_WINDOW_WORDS 8u /* words of the largest binary conv window (k * k * C bits), from ebnn_config.h */
#endif

#if defined(__SANITIZE_ADDRESS__) /* gcc */
#define EBNN_INSTRUMENTED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) /* clang */
#define EBNN_INSTRUMENTED 1
#endif
#endif
#if defined(EBNN_GENERIC)
#define EBNN_NO_UNROLL
#endif
#if defined(__GNUC__) && !defined(EBNN_INSTRUMENTED) && !defined(EBNN_GENERIC) /* else the compiler decides */
#define EBNN_INLINE static inline __attribute__((always_inline))
#else
#define EBNN_INLINE static inline
#endif
/* Loops whose trip count is a layer constant: unrolled where the compiler takes the hint. Sanitizers
 * keep the parameter structs from folding into constants, and nested unrolling of unknown counts then
 * explodes: no hint under ASan (define EBNN_NO_UNROLL for other instrumented builds). */
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 8 && defined(__OPTIMIZE__) && \
    !defined(EBNN_INSTRUMENTED) && !defined(EBNN_NO_UNROLL)
#define EBNN_UNROLL _Pragma("GCC unroll 32")
#else
#define EBNN_UNROLL
#endif
/* 64-bit hosts XOR and count two stream words at once. */
#if defined(UINTPTR_MAX) && UINTPTR_MAX > 0xFFFFFFFFu
#define EBNN_WIDE 1
#else
#define EBNN_WIDE 0
#endif
#if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define EBNN_LITTLE_ENDIAN 1
#else
#define EBNN_LITTLE_ENDIAN 0
#endif

/* ---- popcount, chosen per target ------------------------------------------------------------ */
#if defined(EBNN_POPCOUNT_SWAR) && EBNN_POPCOUNT_SWAR
/* Cores without a popcount instruction (Cortex-M0/M4, Lakemont): a SWAR count beats libgcc's call. */
EBNN_INLINE uint32_t ebnn_pc32(uint32_t v)
{
    v = v - ((v >> 1) & 0x55555555u);
    v = (v & 0x33333333u) + ((v >> 2) & 0x33333333u);
    v = (v + (v >> 4)) & 0x0F0F0F0Fu;
    return (v * 0x01010101u) >> 24;
}
EBNN_INLINE uint32_t ebnn_pc64(uint64_t v)
{
    v = v - ((v >> 1) & 0x5555555555555555u);
    v = (v & 0x3333333333333333u) + ((v >> 2) & 0x3333333333333333u);
    v = (v + (v >> 4)) & 0x0F0F0F0F0F0F0F0Fu;
    return (uint32_t)((v * 0x0101010101010101u) >> 56);
}
#else
EBNN_INLINE uint32_t ebnn_pc32(uint32_t v)
{
    return (uint32_t)__builtin_popcountl((unsigned long)v); /* popcountl: int is 16 bits on AVR */
}
EBNN_INLINE uint32_t ebnn_pc64(uint64_t v)
{
    return (uint32_t)__builtin_popcountll((unsigned long long)v);
}
#endif

/* ---- bit streams ------------------------------------------------------------------------------ */
EBNN_INLINE uint32_t ebnn_words(uint32_t bits)
{
    return (bits + 31u) >> 5;
}

EBNN_INLINE uint32_t ebnn_low_mask(uint32_t n) /* n in 0..32 */
{
    return n >= 32u ? 0xFFFFFFFFu : (((uint32_t)1 << n) - 1u);
}

/* n (1..32) bits of an activation stream starting at bit pos. Reads up to 8 bytes from the byte of
 * pos on, past the run's end: activation streams lie in the arena, which ends with 8 bytes of slack. */
EBNN_INLINE uint32_t ebnn_bits_at(const uint32_t *s, uint32_t pos, uint32_t n)
{
#if EBNN_WIDE && EBNN_LITTLE_ENDIAN
    uint64_t v; /* the stream's bytes in order are its bits in order: one unaligned load */
    memcpy(&v, (const uint8_t *)s + (pos >> 3), sizeof v);
    return (uint32_t)(v >> (pos & 7u)) & ebnn_low_mask(n);
#elif EBNN_WIDE
    const uint32_t w = pos >> 5, o = pos & 31u;
    return (uint32_t)((((uint64_t)s[w + 1u] << 32) | s[w]) >> o) & ebnn_low_mask(n);
#else
    const uint32_t w = pos >> 5, o = pos & 31u;
    return ((s[w] >> o) | ((s[w + 1u] << 1) << (31u - o))) & ebnn_low_mask(n);
#endif
}

/* n (1..32) flip bits starting at f0, a multiple of EBNN_CONV_PASS (so within one word). */
EBNN_INLINE uint32_t ebnn_flip_bits(const EBNN_PARAM uint32_t *flips, uint32_t f0, uint32_t n)
{
    return (flips[f0 >> 5] >> (f0 & 31u)) & ebnn_low_mask(n);
}

/* OR the n (1..32) low bits of v into the stream at bit pos. */
EBNN_INLINE void ebnn_or_bits(uint32_t *s, uint32_t pos, uint32_t v, uint32_t n)
{
    const uint32_t w = pos >> 5, o = pos & 31u;
    s[w] |= v << o;
    if (o + n > 32u) {
        s[w + 1u] |= v >> (32u - o);
    }
}

/* Overwrite n (1..32) bits of the stream at bit pos with the low bits of v. */
EBNN_INLINE void ebnn_put_bits(uint32_t *s, uint32_t pos, uint32_t v, uint32_t n)
{
    const uint32_t w = pos >> 5, o = pos & 31u, m = ebnn_low_mask(n);
    s[w] = (s[w] & ~(m << o)) | (v << o);
    if (o + n > 32u) {
        s[w + 1u] = (s[w + 1u] & ~(m >> (32u - o))) | (v >> (32u - o));
    }
}

EBNN_INLINE void ebnn_clear_words(uint32_t *s, uint32_t n_bits)
{
    uint32_t i;
    const uint32_t n = ebnn_words(n_bits);
    for (i = 0; i < n; ++i) {
        s[i] = 0;
    }
}

/* Copy a run of n bits from stream src at spos to a zeroed buffer dst at dpos. */
EBNN_INLINE void ebnn_copy_run(uint32_t *dst, uint32_t dpos, const uint32_t *src, uint32_t spos, uint32_t n)
{
    uint32_t off;
    EBNN_UNROLL
    for (off = 0; off < n; off += 32u) {
        const uint32_t take = n - off < 32u ? n - off : 32u;
        ebnn_or_bits(dst, dpos + off, ebnn_bits_at(src, spos + off, take), take);
    }
}

/* Set a run of n bits of a zeroed buffer. */
EBNN_INLINE void ebnn_ones_run(uint32_t *dst, uint32_t dpos, uint32_t n)
{
    uint32_t off;
    EBNN_UNROLL
    for (off = 0; off < n; off += 32u) {
        const uint32_t take = n - off < 32u ? n - off : 32u;
        ebnn_or_bits(dst, dpos + off, ebnn_low_mask(take), take);
    }
}

#if EBNN_WIDE
EBNN_INLINE uint64_t ebnn_ld64(const uint32_t *s)
{
    return ((uint64_t)s[1] << 32) | s[0];
}
EBNN_INLINE uint64_t ebnn_pld64(const EBNN_PARAM uint32_t *s)
{
    return ((uint64_t)s[1] << 32) | s[0];
}
#endif

/* Bits that differ between nw words of a and b (the XNOR-popcount's complement). */
EBNN_INLINE uint32_t ebnn_mismatches(const uint32_t *a, const EBNN_PARAM uint32_t *b, uint32_t nw)
{
    uint32_t d = 0, i = 0;
#if EBNN_WIDE
    for (; i + 4u <= nw; i += 4u) {
        d += ebnn_pc64(ebnn_ld64(a + i) ^ ebnn_pld64(b + i)) + ebnn_pc64(ebnn_ld64(a + i + 2u) ^ ebnn_pld64(b + i + 2u));
    }
    if (i + 2u <= nw) {
        d += ebnn_pc64(ebnn_ld64(a + i) ^ ebnn_pld64(b + i));
        i += 2u;
    }
#endif
    EBNN_UNROLL
    for (; i < nw; ++i) {
        d += ebnn_pc32(a[i] ^ b[i]);
    }
    return d;
}

/* The same, counting only the bits set in mask (a conv window reaching into the zero padding). */
EBNN_INLINE uint32_t ebnn_mismatches_masked(const uint32_t *a, const uint32_t *mask, const EBNN_PARAM uint32_t *b,
                                            uint32_t nw)
{
    uint32_t d = 0, i;
    EBNN_UNROLL
    for (i = 0; i < nw; ++i) {
        d += ebnn_pc32((a[i] ^ b[i]) & mask[i]);
    }
    return d;
}

EBNN_INLINE int32_t ebnn_threshold(const EBNN_PARAM int16_t *t16, const EBNN_PARAM int32_t *t32, uint32_t f)
{
    return t16 ? (int32_t)t16[f] : t32[f];
}

/* ---- sums on raw pixels: subset-sum tables -----------------------------------------------------
 * t[s] is the sum of the pixels v[i] whose bit i is set in s; every output then adds the entry its
 * weight bits (+1 = 1) select, and S = 2 * (sum of its +1 pixels) - (sum of all pixels). */
/* Fill t[1 .. 2^len - 1] from t[0]: t[s] = t[0] + step * (sum of the v[i] whose bit i is set in s).
 * Each value doubles the table: the new upper half is the lower half plus it. len 1..4. */
EBNN_INLINE void ebnn_fill_subsets(int32_t *t, const int32_t *v, uint32_t len, int32_t step)
{
    uint32_t i, s;
    EBNN_UNROLL
    for (i = 0; i < len; ++i) {
        const uint32_t half = 1u << i;
        const int32_t add = step * v[i];
        EBNN_UNROLL
        for (s = 0; s < half; ++s) {
            t[half + s] = t[s] + add;
        }
    }
}

EBNN_INLINE int32_t ebnn_subsets(int32_t *t, const int32_t *v, uint32_t len) /* t[0] is 0; returns the sum */
{
    ebnn_fill_subsets(t, v, len, 1);
    return t[(1u << len) - 1u];
}

/* n (1..8) outputs of a group add the subset sums their 4-bit chunks of word select. */
EBNN_INLINE void ebnn_lookup(int32_t *acc, uint32_t n, uint32_t word, const int32_t *t)
{
    uint32_t j;
    EBNN_UNROLL
    for (j = 0; j < n; ++j) {
        acc[j] += t[(word >> (4u * j)) & 15u];
    }
}

/* Sums S of dense outputs o0 .. o0 + n - 1 (o0 a multiple of EBNN_GROUP, n <= EBNN_CONV_PASS) on n_in raw
 * pixels; weights grouped: word g * nq + q holds output 8g + j's weights for pixels 4q .. 4q+3 in bits
 * 4j .. 4j+3. Each chunk of 4 pixels gets its table once for all n outputs. */
EBNN_INLINE void ebnn_pixel_dense_sums(const uint8_t *px, uint32_t n_in, const EBNN_PARAM uint32_t *weights,
                                       uint32_t o0, uint32_t n, int32_t *acc, int32_t *t, int32_t *v)
{
    const uint32_t nq = (n_in + 3u) >> 2, groups = (n + EBNN_GROUP - 1u) / EBNN_GROUP;
    const EBNN_PARAM uint32_t *w = weights + (o0 / EBNN_GROUP) * nq;
    int32_t total = 0;
    uint32_t q, g, j;
    t[0] = 0;
    for (j = 0; j < n; ++j) {
        acc[j] = 0;
    }
    for (q = 0; q < nq; ++q, px += 4) {
        if (q + 1u < nq || (n_in & 3u) == 0u) {
            v[0] = px[0];
            v[1] = px[1];
            v[2] = px[2];
            v[3] = px[3];
        } else { /* the last chunk holds n_in % 4 pixels */
            for (j = 0; j < 4u; ++j) {
                v[j] = j < (n_in & 3u) ? (int32_t)px[j] : 0;
            }
        }
        total += ebnn_subsets(t, v, 4u);
        EBNN_UNROLL
        for (g = 0; g < groups; ++g) {
            const uint32_t left = n - g * EBNN_GROUP;
            ebnn_lookup(acc + g * EBNN_GROUP, left < EBNN_GROUP ? left : EBNN_GROUP, w[g * nq + q], t);
        }
    }
    for (j = 0; j < n; ++j) {
        acc[j] = 2 * acc[j] - total;
    }
}

/* ---- the kernels' temporaries ------------------------------------------------------------------
 * One ebnn_work per inference call (model.c keeps it in the frame of ebnn_predict_scores; the block API
 * of ebnn.c in each call's own frame). The layers use it in turn, and a layer's path uses one member of
 * the union, so the whole inference needs the largest member, once. */
#if EBNN_WIDE
typedef uint64_t ebnn_lanes;
#else
typedef uint32_t ebnn_lanes;
#endif
#define EBNN_LANE_WORDS 2u
#define EBNN_LANE_LIMIT 32u /* taps * lane words of a pass at most, for the lanes */
#ifndef EBNN_LANE_SLOTS
#define EBNN_LANE_SLOTS EBNN_LANE_LIMIT /* lane words the work area holds (ebnn_config.h: what the model uses) */
#endif

typedef union {
    struct {                           /* sums on raw pixels (conv tables, dense), dense and classifier */
        int32_t acc[EBNN_CONV_PASS];   /* the sums S of a pass */
        int32_t t[16];                 /* a subset-sum table */
        int32_t v[4];                  /* the pixels of its chunk */
    } tab;
    struct {                           /* binary conv */
        int32_t bound[EBNN_CONV_PASS]; /* the most mismatches that fire (ebnn_bounds), per pass */
        uint32_t win[EBNN_WINDOW_WORDS], valid[EBNN_WINDOW_WORDS]; /* a gathered window and its mask */
    } bit;
    struct {                           /* conv on raw pixels in packed lanes */
        ebnn_lanes m[EBNN_LANE_SLOTS];    /* M of tap t, lane word l at t * words + l */
        ebnn_lanes bias[EBNN_LANE_WORDS]; /* 2^15 - T per lane */
    } lane;
} ebnn_work;

/* ---- conv ------------------------------------------------------------------------------------ */

/* Signed subset sums of len (1..4) pixel values: t[s] = sum over i of (bit i of s ? +v[i] : -v[i]),
 * so an output whose weight bits for the chunk are s adds exactly its share of S. */
EBNN_INLINE void ebnn_signed_subsets(int32_t *t, const int32_t *v, uint32_t len)
{
    uint32_t i;
    t[0] = 0;
    EBNN_UNROLL
    for (i = 0; i < len; ++i) {
        t[0] -= v[i];
    }
    ebnn_fill_subsets(t, v, len, 2);
}

/* Fire mask (bit j: S >= T) of filters f0 .. f0 + n - 1 of a conv on raw pixels whose window starts
 * at input (iy0, ix0). Chunks: each kernel row's K * C taps ((kx, c) order) in runs of up to 4, byte
 * (f * K + ky) * ceil(K * C / 4) + r of p->chunks holding filter f's bits for run r of row ky.
 * interior: the whole window lies inside the input (no bounds checks). */
EBNN_INLINE uint32_t ebnn_pixel_conv_fire(const ebnn_conv_params *p, const uint8_t *px, int32_t iy0, int32_t ix0,
                                          uint32_t f0, uint32_t n, int interior, ebnn_work *wk)
{
    const uint32_t k = p->kernel, c = p->in.c, h = p->in.h, w = p->in.w, kc = k * c;
    const uint32_t cq = (kc + 3u) >> 2, nq = k * cq;
    const EBNN_PARAM uint8_t *chunks = p->chunks + f0 * nq;
    int32_t *acc = wk->tab.acc, *t = wk->tab.t, *v = wk->tab.v;
    uint32_t ky, r, i, j, mask = 0;
    EBNN_UNROLL
    for (j = 0; j < n; ++j) {
        acc[j] = 0;
    }
    EBNN_UNROLL
    for (ky = 0; ky < k; ++ky) {
        const int32_t iy = iy0 + (int32_t)ky;
        const int row_ok = interior || (iy >= 0 && iy < (int32_t)h);
        EBNN_UNROLL
        for (r = 0; r < cq; ++r) {
            const uint32_t len = kc - 4u * r < 4u ? kc - 4u * r : 4u;
            EBNN_UNROLL
            for (i = 0; i < len; ++i) {
                const uint32_t tap = 4u * r + i;
                const int32_t ix = ix0 + (int32_t)(tap / c);
                if (interior || (row_ok && ix >= 0 && ix < (int32_t)w)) {
                    v[i] = px[((tap % c) * h + (uint32_t)iy) * w + (uint32_t)ix];
                } else {
                    v[i] = 0;
                }
            }
            ebnn_signed_subsets(t, v, len);
            EBNN_UNROLL
            for (j = 0; j < n; ++j) {
                acc[j] += t[chunks[j * nq + ky * cq + r]];
            }
        }
    }
    EBNN_UNROLL
    for (j = n; j-- > 0;) { /* highest filter first: mask = 2 * mask + fires */
        mask = 2u * mask + (uint32_t)(acc[j] >= ebnn_threshold(p->thr16, p->thr32, f0 + j));
    }
    return mask;
}

/* The same for a binary conv: the window's K rows of K * C bits are gathered into one buffer in the
 * weights' (ky, kx, c) order, then each filter (its weights padded to whole words) is one
 * XNOR-popcount over the buffer. Outside the input the window is masked off (zero padding).
 * bound[j]: the most mismatches d with which filter f0 + j fires on a whole window (ebnn_bounds). */
EBNN_INLINE uint32_t ebnn_bit_conv_fire(const ebnn_conv_params *p, const uint32_t *x, int32_t iy0, int32_t ix0,
                                        uint32_t f0, uint32_t n, int interior, ebnn_work *wk)
{
    const uint32_t k = p->kernel, c = p->in.c, h = p->in.h, w = p->in.w, kc = k * c, fb = k * kc;
    /* the block checked fw <= EBNN_WINDOW_WORDS; the clamp tells the compiler */
    const uint32_t fw = ebnn_words(fb) < EBNN_WINDOW_WORDS ? ebnn_words(fb) : EBNN_WINDOW_WORDS;
    const EBNN_PARAM uint32_t *wt = p->weights + f0 * fw;
    uint32_t *win = wk->bit.win, *valid = wk->bit.valid;
    const int32_t *bound = wk->bit.bound;
    uint32_t ky, i, j, mask = 0;
    int32_t n_valid;
    EBNN_UNROLL
    for (i = 0; i < fw; ++i) {
        win[i] = 0;
        valid[i] = 0;
    }
    if (interior) {
        EBNN_UNROLL
        for (ky = 0; ky < k; ++ky) {
            ebnn_copy_run(win, ky * kc, x, ((uint32_t)(iy0 + (int32_t)ky) * w + (uint32_t)ix0) * c, kc);
        }
        n_valid = (int32_t)fb;
    } else {
        const uint32_t kx_lo = ix0 < 0 ? (uint32_t)(-ix0) : 0u;
        const uint32_t kx_hi = ix0 + (int32_t)k > (int32_t)w ? (uint32_t)((int32_t)w - ix0) : k;
        const uint32_t ky_lo = iy0 < 0 ? (uint32_t)(-iy0) : 0u;
        const uint32_t ky_hi = iy0 + (int32_t)k > (int32_t)h ? (uint32_t)((int32_t)h - iy0) : k;
        const uint32_t run = (kx_hi - kx_lo) * c;
        for (ky = ky_lo; ky < ky_hi; ++ky) {
            const uint32_t dpos = ky * kc + kx_lo * c;
            ebnn_copy_run(win, dpos, x, ((uint32_t)(iy0 + (int32_t)ky) * w + (uint32_t)ix0 + kx_lo) * c, run);
            ebnn_ones_run(valid, dpos, run);
        }
        n_valid = (int32_t)((ky_hi - ky_lo) * run);
    }
    wt += n * fw;
    if (interior) { /* S = fb - 2d >= T  <=>  d <= bound[j] */
        EBNN_UNROLL
        for (j = n; j-- > 0;) {
            wt -= fw;
            mask = 2u * mask + (uint32_t)((int32_t)ebnn_mismatches(win, wt, fw) <= bound[j]);
        }
    } else {
        EBNN_UNROLL
        for (j = n; j-- > 0;) {
            wt -= fw;
            mask = 2u * mask + (uint32_t)(n_valid - 2 * (int32_t)ebnn_mismatches_masked(win, valid, wt, fw) >=
                                          ebnn_threshold(p->thr16, p->thr32, f0 + j));
        }
    }
    return mask;
}

/* For a binary conv pass: S = fb - 2d >= T  <=>  d <= floor((fb - T) / 2), clamped to [-1, fb]. */
EBNN_INLINE void ebnn_bounds(const ebnn_conv_params *p, uint32_t f0, uint32_t n, int32_t *bound)
{
    const int32_t fb = (int32_t)p->kernel * p->kernel * p->in.c;
    uint32_t j;
    for (j = 0; j < n; ++j) {
        const int32_t t = ebnn_threshold(p->thr16, p->thr32, f0 + j);
        bound[j] = t > fb ? -1 : t < -fb ? fb : (fb - t) >> 1; /* fb - t in [0, 2 fb]: no negative shift */
    }
}

/* ---- conv on raw pixels with few filters: packed lanes ----------------------------------------
 * Up to EBNN_LANE_WORDS words of EBNN_LANES 16-bit lanes, one lane per filter: every tap adds
 * pixel * M[tap] (M has a 1 in the lane of each filter whose weight is +1), so one multiply-add
 * serves EBNN_LANES filters. Then 2 * lane - (sum of pixels) - T + 2^15 is below 2^16, and its
 * bit 15 says whether the filter fires: all lanes compared at once. Needs K * K * C <= 64. */
#if EBNN_WIDE
#define EBNN_LANES 4u
#define EBNN_LANE_ONES 0x0001000100010001u
#define EBNN_LANE_GATHER 0x0001000200040008u /* bit 16f (f < 4) -> bit 48 + f */
#define EBNN_LANE_SHIFT 48
#else
#define EBNN_LANES 2u
#define EBNN_LANE_ONES 0x00010001u
#define EBNN_LANE_GATHER 0x00010002u /* bit 16f (f < 2) -> bit 16 + f */
#define EBNN_LANE_SHIFT 16
#endif
#ifndef EBNN_PIXEL_LANES
#define EBNN_PIXEL_LANES 1 /* 0 on 8-bit cores, where a 32-bit multiply is a library call */
#endif


EBNN_INLINE int ebnn_use_lanes(const ebnn_conv_params *p, uint32_t n)
{
    const uint32_t taps = (uint32_t)p->kernel * p->kernel * p->in.c;
    const uint32_t words = (n + EBNN_LANES - 1u) / EBNN_LANES;
    return EBNN_PIXEL_LANES && words <= EBNN_LANE_WORDS && taps <= 64u && taps * words <= EBNN_LANE_LIMIT &&
           taps * words <= EBNN_LANE_SLOTS;
}

/* M per tap and the biases of filters f0 .. f0 + n - 1, once per pass. */
EBNN_INLINE void ebnn_lane_setup(const ebnn_conv_params *p, uint32_t f0, uint32_t n, ebnn_work *wk)
{
    const uint32_t k = p->kernel, c = p->in.c, kc = k * c, cq = (kc + 3u) >> 2, taps = k * kc;
    const uint32_t words = (n + EBNN_LANES - 1u) / EBNN_LANES;
    const int32_t limit = (int32_t)taps * 255 + 1; /* |S| < limit: clamping T there changes no output */
    uint32_t t, j;
    for (t = 0; t < taps * words; ++t) {
        wk->lane.m[t] = 0;
    }
    for (j = 0; j < words; ++j) {
        wk->lane.bias[j] = 0;
    }
    for (j = 0; j < n; ++j) {
        const uint32_t shift = 16u * (j % EBNN_LANES), word = j / EBNN_LANES;
        int32_t thr = ebnn_threshold(p->thr16, p->thr32, f0 + j);
        thr = thr > limit ? limit : thr < -limit ? -limit : thr;
        wk->lane.bias[word] += (ebnn_lanes)(uint32_t)(32768 - thr) << shift;
        for (t = 0; t < taps; ++t) { /* tap t = ky * K * C + (kx * C + ch): row ky, chunk position r */
            const uint32_t ky = t / kc, r = t % kc;
            const uint32_t bit = (p->chunks[((f0 + j) * k + ky) * cq + r / 4u] >> (r % 4u)) & 1u;
            wk->lane.m[t * words + word] |= (ebnn_lanes)bit << shift;
        }
    }
}

EBNN_INLINE uint32_t ebnn_lane_conv_fire(const ebnn_conv_params *p, const uint8_t *px, int32_t iy0, int32_t ix0,
                                         uint32_t n, int interior, const ebnn_work *wk)
{
    const uint32_t k = p->kernel, c = p->in.c, h = p->in.h, w = p->in.w;
    const uint32_t words = (n + EBNN_LANES - 1u) / EBNN_LANES;
    ebnn_lanes acc[EBNN_LANE_WORDS] = {0}, total = 0;
    uint32_t ky, kx, ch, l, t = 0, mask = 0;
    EBNN_UNROLL
    for (ky = 0; ky < k; ++ky) {
        const int32_t iy = iy0 + (int32_t)ky;
        EBNN_UNROLL
        for (kx = 0; kx < k; ++kx) {
            const int32_t ix = ix0 + (int32_t)kx;
            const int ok = interior || (iy >= 0 && iy < (int32_t)h && ix >= 0 && ix < (int32_t)w);
            EBNN_UNROLL
            for (ch = 0; ch < c; ++ch, ++t) {
                if (ok) {
                    const ebnn_lanes v = px[(ch * h + (uint32_t)iy) * w + (uint32_t)ix];
                    total += v;
                    EBNN_UNROLL
                    for (l = 0; l < words; ++l) {
                        acc[l] += v * wk->lane.m[t * words + l];
                    }
                }
            }
        }
    }
    EBNN_UNROLL
    for (l = words; l-- > 0;) {
        const ebnn_lanes v = 2u * acc[l] - total * EBNN_LANE_ONES + wk->lane.bias[l];
        const uint32_t fired = (uint32_t)((((v >> 15) & EBNN_LANE_ONES) * EBNN_LANE_GATHER) >> EBNN_LANE_SHIFT);
        mask = (mask << EBNN_LANES) | (fired & ((1u << EBNN_LANES) - 1u));
    }
    return mask & ebnn_low_mask(n);
}

/* Fire mask of filters f0 .. f0 + n - 1 at conv position (oy, ox), before pooling. */
EBNN_INLINE uint32_t ebnn_conv_fire(const ebnn_conv_params *p, ebnn_input in, uint32_t oy, uint32_t ox, uint32_t f0,
                                    uint32_t n, ebnn_work *wk)
{
    const int32_t iy0 = (int32_t)(oy * p->stride) - (int32_t)p->padding;
    const int32_t ix0 = (int32_t)(ox * p->stride) - (int32_t)p->padding;
    const int interior = iy0 >= 0 && ix0 >= 0 && iy0 + (int32_t)p->kernel <= (int32_t)p->in.h &&
                         ix0 + (int32_t)p->kernel <= (int32_t)p->in.w;
    if (in.pixels && ebnn_use_lanes(p, n)) {
        return interior ? ebnn_lane_conv_fire(p, in.pixels, iy0, ix0, n, 1, wk)
                        : ebnn_lane_conv_fire(p, in.pixels, iy0, ix0, n, 0, wk);
    }
    if (in.pixels) {
        return interior ? ebnn_pixel_conv_fire(p, in.pixels, iy0, ix0, f0, n, 1, wk)
                        : ebnn_pixel_conv_fire(p, in.pixels, iy0, ix0, f0, n, 0, wk);
    }
    return interior ? ebnn_bit_conv_fire(p, in.bits, iy0, ix0, f0, n, 1, wk)
                    : ebnn_bit_conv_fire(p, in.bits, iy0, ix0, f0, n, 0, wk);
}

EBNN_INLINE uint32_t ebnn_conv_scratch_words_k(const ebnn_conv_params *p)
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

/* Thresholded conv bits of filters f0 .. f0 + n - 1, conv row y, columns [0, cols), into row slot
 * `slot` of buf (rows of conv.w * F bits). */
EBNN_INLINE void ebnn_conv_row(const ebnn_conv_params *p, ebnn_input in, uint32_t y, uint32_t cols, uint32_t *buf,
                               uint32_t slot, uint32_t f0, uint32_t n, ebnn_work *wk)
{
    const uint32_t fw = p->conv.c, base = slot * p->conv.w * fw + f0;
    uint32_t x;
    for (x = 0; x < cols; ++x) {
        ebnn_put_bits(buf, base + x * fw, ebnn_conv_fire(p, in, y, x, f0, n, wk), n);
    }
}

/* One pass of a conv block: filters f0 .. f0 + n - 1 (n <= EBNN_CONV_PASS) over every output position. */
EBNN_INLINE void ebnn_conv_pass(const ebnn_conv_params *p, ebnn_input in, uint32_t *out, uint32_t *scratch,
                                uint32_t f0, uint32_t n, ebnn_work *wk)
{
    const uint32_t nf = p->out.c, ho = p->out.h, wo = p->out.w, pool = p->pool, ps = p->pool_stride;
    const uint32_t full = ebnn_low_mask(n), flips = ebnn_flip_bits(p->flips, f0, n);
    uint32_t oy, ox, dy, dx;
    if (!in.pixels) {
        ebnn_bounds(p, f0, n, wk->bit.bound);
    } else if (ebnn_use_lanes(p, n)) {
        ebnn_lane_setup(p, f0, n, wk);
    }
    if (!pool) {
        for (oy = 0; oy < ho; ++oy) {
            for (ox = 0; ox < wo; ++ox) {
                ebnn_or_bits(out, (oy * wo + ox) * nf + f0, ebnn_conv_fire(p, in, oy, ox, f0, n, wk) ^ flips, n);
            }
        }
    } else if (p->fusion == EBNN_FUSION_RECOMPUTE) { /* the paper's fusion: each window recomputed */
        for (oy = 0; oy < ho; ++oy) {
            for (ox = 0; ox < wo; ++ox) {
                uint32_t mask = 0;
                for (dy = 0; dy < pool && (!EBNN_POOL_EARLY_EXIT || mask != full); ++dy) {
                    for (dx = 0; dx < pool && (!EBNN_POOL_EARLY_EXIT || mask != full); ++dx) {
                        mask |= ebnn_conv_fire(p, in, oy * ps + dy, ox * ps + dx, f0, n, wk);
                    }
                }
                ebnn_or_bits(out, (oy * wo + ox) * nf + f0, mask ^ flips, n);
            }
        }
    } else { /* rowbuffer: `pool` conv rows held (row r in slot r % pool); unfused: every conv row */
        const int rowbuffer = p->fusion == EBNN_FUSION_ROWBUFFER;
        const uint32_t held = rowbuffer ? pool : p->conv.h, rowbits = p->conv.w * nf;
        const uint32_t cols = (wo - 1u) * ps + pool;
        uint32_t next_row = 0;
        if (!rowbuffer) {
            for (next_row = 0; next_row < p->conv.h; ++next_row) {
                ebnn_conv_row(p, in, next_row, p->conv.w, scratch, next_row, f0, n, wk);
            }
        }
        for (oy = 0; oy < ho; ++oy) {
            for (; next_row < oy * ps + pool; ++next_row) { /* rowbuffer: each conv row computed once */
                ebnn_conv_row(p, in, next_row, cols, scratch, next_row % pool, f0, n, wk);
            }
            for (ox = 0; ox < wo; ++ox) {
                uint32_t mask = 0;
                for (dy = 0; dy < pool; ++dy) {
                    const uint32_t row = ((oy * ps + dy) % held) * rowbits + f0;
                    for (dx = 0; dx < pool; ++dx) {
                        mask |= ebnn_bits_at(scratch, row + (ox * ps + dx) * nf, n);
                    }
                }
                ebnn_or_bits(out, (oy * wo + ox) * nf + f0, mask ^ flips, n);
            }
        }
    }
}

EBNN_INLINE ebnn_status ebnn_conv_block_k(const ebnn_conv_params *p, ebnn_input in, uint32_t *out,
                                          uint32_t *scratch, ebnn_work *wk)
{
    uint32_t f0;
    if (!p || !out || (!in.pixels && !in.bits) || (in.pixels ? !p->chunks : !p->weights) ||
        (ebnn_conv_scratch_words_k(p) && !scratch)) {
        return EBNN_E_NULL;
    }
    if (!in.pixels && ebnn_words((uint32_t)p->kernel * p->kernel * p->in.c) > EBNN_WINDOW_WORDS) {
        return EBNN_E_SIZE; /* the window buffer is sized by EBNN_WINDOW_WORDS (ebnn_config.h) */
    }
    ebnn_clear_words(out, (uint32_t)p->out.c * p->out.h * p->out.w);
    EBNN_UNROLL
    for (f0 = 0; f0 < p->out.c; f0 += EBNN_CONV_PASS) {
        if (p->out.c - f0 >= EBNN_CONV_PASS) {
            ebnn_conv_pass(p, in, out, scratch, f0, EBNN_CONV_PASS, wk);
        } else {
            ebnn_conv_pass(p, in, out, scratch, f0, p->out.c - f0, wk);
        }
    }
    return EBNN_OK;
}

/* ---- dense, classifier, input ---------------------------------------------------------------- */

/* Sums S of outputs o0 .. o0 + n - 1 of a dense layer (rows of n_in weight bits padded to whole words). */
EBNN_INLINE void ebnn_dense_sums(ebnn_input in, uint32_t n_in, const EBNN_PARAM uint32_t *weights, uint32_t o0,
                                 uint32_t n, ebnn_work *wk)
{
    int32_t *acc = wk->tab.acc;
    const uint32_t nw = ebnn_words(n_in);
    uint32_t j;
    if (in.pixels) {
        ebnn_pixel_dense_sums(in.pixels, n_in, weights, o0, n, acc, wk->tab.t, wk->tab.v);
        return;
    }
    for (j = 0; j < n; ++j) {
        acc[j] = (int32_t)n_in - 2 * (int32_t)ebnn_mismatches(in.bits, weights + (o0 + j) * nw, nw);
    }
}

EBNN_INLINE ebnn_status ebnn_dense_block_k(const ebnn_dense_params *p, ebnn_input in, uint32_t *out, ebnn_work *wk)
{
    const int32_t *acc = wk->tab.acc;
    uint32_t o0, j;
    if (!p || !out || (!in.pixels && !in.bits)) {
        return EBNN_E_NULL;
    }
    ebnn_clear_words(out, p->n_out);
    for (o0 = 0; o0 < p->n_out; o0 += EBNN_CONV_PASS) {
        const uint32_t n = p->n_out - o0 < EBNN_CONV_PASS ? p->n_out - o0 : EBNN_CONV_PASS;
        uint32_t mask = 0;
        ebnn_dense_sums(in, p->n_in, p->weights, o0, n, wk);
        for (j = 0; j < n; ++j) {
            mask |= (uint32_t)(acc[j] >= ebnn_threshold(p->thr16, p->thr32, o0 + j)) << j;
        }
        ebnn_or_bits(out, o0, mask ^ ebnn_flip_bits(p->flips, o0, n), n);
    }
    return EBNN_OK;
}

EBNN_INLINE int ebnn_classifier_k(const ebnn_classifier_params *p, ebnn_input in, int32_t *scores, ebnn_work *wk)
{
    const int32_t *acc = wk->tab.acc;
    int32_t best_score = 0;
    uint32_t o0, j;
    int best = 0;
    if (!p || (!in.pixels && !in.bits)) {
        return EBNN_E_NULL;
    }
    for (o0 = 0; o0 < p->classes; o0 += EBNN_CONV_PASS) {
        const uint32_t n = p->classes - o0 < EBNN_CONV_PASS ? p->classes - o0 : EBNN_CONV_PASS;
        ebnn_dense_sums(in, p->n_in, p->weights, o0, n, wk);
        for (j = 0; j < n; ++j) {
            const uint32_t c = o0 + j;
            const int32_t score = p->scale[c] * acc[j] + p->offset[c];
            if (scores) {
                scores[c] = score;
            }
            if (c == 0u || score > best_score) {
                best = (int)c;
                best_score = score;
            }
        }
    }
    return best;
}

EBNN_INLINE void ebnn_pack_binary_input_k(const uint8_t *pixels, ebnn_dims d, uint8_t threshold, uint32_t *out)
{
    const uint32_t plane = (uint32_t)d.h * d.w;
    uint32_t i, c, word = 0, bit = 0;
    for (i = 0; i < plane; ++i) {
        for (c = 0; c < d.c; ++c) {
            word |= (uint32_t)(pixels[c * plane + i] >= threshold) << bit;
            if (++bit == 32u) {
                *out++ = word;
                word = 0;
                bit = 0;
            }
        }
    }
    if (bit) {
        *out = word;
    }
}

#endif /* EBNN_KERNELS_H */
