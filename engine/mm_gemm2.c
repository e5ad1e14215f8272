/* mm_gemm2.c - the int8 prompt GEMM of the avx2 kernel set (AVX2 without
 * VNNI; built with x86-64-v3 flags): gemm_i8_rows of mm_kernels_avx2.
 *
 * matmul.c quantizes up to MM_G8_XCHUNK rows of X per pass as ggml's q8_0
 * activations (per block of 32: d = amax/127, q = rint(x/d), the bits of
 * mm_x8_quant) and splits W into row ranges over the threads. Here each
 * group of MM_G8_NW = 8 W rows is unpacked once per pass into struct
 * mm_g8_wblk blocks: for k-step s (4 codes) the 8 rows side by side, one
 * per 32-bit lane. The microkernel runs those 8 rows against MM_G8_NX = 4
 * X rows over the whole row length: per step, the 4 X codes of each X row
 * are broadcast and multiplied with the 8 rows' codes by vpmaddubsw
 * (u8 x s8 pairs into int16), summed to int32 by vpmaddwd; per block (per
 * half block for types with a scale per 16) the exact integer sum is
 * scaled in f32:
 *     f += float(isum) * (dx * dw)   [+ bw * (dx * sum(q)) with a bias]
 * which are the f32 steps of the avx512 set's VNNI GEMM (mm_gemm512.c),
 * in the same order: both sets give the same bits.
 *
 * vpmaddubsw takes one unsigned operand and saturates at int16, so:
 *   - signed codes (Q8_0, IQ4_NL, IQ4_XS: -128..127) use the sign trick,
 *     |w| times x with w's sign (pairs <= 2 * 128 * 127 < 2^15), and go
 *     to int32 every step;
 *   - the other codes are stored plus an offset that makes them unsigned
 *     (Q4_0 +8, Q6_K +32, Q3_K +4; 0..U), pairs of int16 are summed over
 *     FL steps while FL * 2 * U * 127 < 2^15 (Q4_0, Q4_K: the whole block),
 *     and offset * sum(x codes) is subtracted in int32 (a shift: the
 *     offsets are powers of 2). The integer sums are exact either way.
 */
#include "mm_gemm2.h"

#include <immintrin.h>

#if !defined(__AVX2__) || !defined(__FMA__)
#error "mm_gemm2.c needs -march=x86-64-v3 (Makefile)"
#endif

/* How a type's codes meet vpmaddubsw (see the top). */
struct g2_type {
    int sgn;   /* 1: signed codes, sign trick */
    int off;   /* added to the codes (0, or 1 << osh) */
    int osh;   /* log2(off), 0 if off == 0 */
    int fl;    /* steps summed in int16 before vpmaddwd */
    int split; /* scale (and bias) per 16 */
};

static int g2_type_of(int type, struct g2_type *t)
{
    static const struct g2_type sgn = {1, 0, 0, 1, 0};
    switch (type) {
    case GGML_TYPE_Q8_0: case GGML_TYPE_IQ4_NL: case GGML_TYPE_IQ4_XS: *t = sgn; return 1;
    case GGML_TYPE_Q4_0: *t = (struct g2_type){0, 8, 3, 8, 0}; return 1;
    case GGML_TYPE_Q4_K: *t = (struct g2_type){0, 0, 0, 8, 0}; return 1;
    case GGML_TYPE_Q5_K: *t = (struct g2_type){0, 0, 0, 4, 0}; return 1;
    case GGML_TYPE_Q6_K: *t = (struct g2_type){0, 32, 5, 2, 1}; return 1;
    case GGML_TYPE_Q2_K: *t = (struct g2_type){0, 0, 0, 4, 1}; return 1;
    case GGML_TYPE_Q3_K: *t = (struct g2_type){0, 4, 2, 4, 1}; return 1;
    default: return 0;
    }
}

/* W rows [r, r + MM_G8_NW) into DST (n_in / 32 blocks), codes plus OFF;
 * rows past n_out get code 0, scale and bias 0. */
static void g2_pack_w(const struct mm_g8_job *j, int64_t r, int off, struct mm_g8_wblk *dst)
{
    const int type = j->w->type;
    const mm_unpack_fn unpack = mm_unpack_avx2[type];
    const int blck = mm_types[type].blck, bytes = mm_types[type].bytes;
    const int per_chunk = MM_QK_K / blck;
    const int64_t n_tb = j->n_in / blck, n_blk = j->n_in / 32;
    const __m256i vo = _mm256_set1_epi8((char)off);
    int8_t q[MM_QK_K];
    float sc[MM_QK_K / 16], bi[MM_QK_K / 16];
    for (int k = 0; k < MM_G8_NW; k++) {
        if (r + k >= j->n_out) {
            for (int64_t b = 0; b < n_blk; b++) {
                for (int s = 0; s < 8; s++) memset(dst[b].u[s] + 4 * k, 0, 4);
                for (int h = 0; h < 2; h++) dst[b].d[h][k] = dst[b].b[h][k] = 0;
            }
            continue;
        }
        const uint8_t *row = (const uint8_t *)j->w->data + (size_t)(r + k) * j->row_bytes;
        for (int64_t tb = 0; tb < n_tb; tb += per_chunk) {
            const int nb = (int)KVT_MIN((int64_t)per_chunk, n_tb - tb);
            const int64_t b = tb * blck / 32;
            unpack(row + tb * bytes, nb, q, sc, bi);
            for (int e = 0; e < nb * blck / 32; e++) {
                uint8_t u[32];
                _mm256_storeu_si256((__m256i *)u, _mm256_add_epi8(
                    _mm256_loadu_si256((const __m256i *)(q + 32 * e)), vo));
                struct mm_g8_wblk *o = dst + b + e;
                for (int s = 0; s < 8; s++) memcpy(o->u[s] + 4 * k, u + 4 * s, 4);
                for (int h = 0; h < 2; h++) {
                    o->d[h][k] = sc[2 * e + h];
                    o->b[h][k] = bi[2 * e + h];
                }
            }
        }
    }
}

/* Keeps V in a register as it is: without it the compiler reorders the
 * sums of a block into a tree and spills its partial products. */
#define G2_KEEP(v) __asm__("" : "+x"(v))

static inline __m256i g2_bcast(const int8_t *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

/* f[i] lane k = the product of W row k of WB (n_blk blocks) and pass-local
 * X row x0 + i, for the MM_G8_NX rows from X0 (type parameters as in
 * struct g2_type, constants after inlining; BIAS: the type has one). */
static inline __attribute__((always_inline)) void
g2_body(const struct mm_g8_job *j, const struct mm_g8_wblk *wb, int64_t x0, int sgn,
        int osh, int fl, int split, int bias, __m256 f[MM_G8_NX])
{
    const mm_ctx *c = j->c;
    const int64_t n = j->n_in, ng = n / 16, nb = n / 32;
    const int8_t *xq[MM_G8_NX];
    const float *xd[MM_G8_NX], *xs[MM_G8_NX];
    const int32_t *xi[MM_G8_NX];
    __m256 fa[MM_G8_NX];
#pragma GCC unroll 4
    for (int i = 0; i < MM_G8_NX; i++) {
        xq[i] = c->gq + (x0 + i) * n;
        xd[i] = c->gd32 + (x0 + i) * nb;
        xs[i] = split ? c->gs16 + (x0 + i) * ng : c->gs32 + (x0 + i) * nb;
        xi[i] = split ? c->gi16 + (x0 + i) * ng : c->gi32 + (x0 + i) * nb;
        fa[i] = _mm256_setzero_ps();
    }
    const __m256i ones = _mm256_set1_epi16(1);
    for (int64_t b = 0; b < nb; b++, wb++) {
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            if (h && !split) break;
            const int s0 = split ? 4 * h : 0, s1 = split ? 4 * h + 4 : 8;
            __m256i acc[MM_G8_NX], a16[MM_G8_NX];
#pragma GCC unroll 4
            for (int i = 0; i < MM_G8_NX; i++) acc[i] = a16[i] = _mm256_setzero_si256();
#pragma GCC unroll 8
            for (int s = s0; s < s1; s++) {
                const __m256i w = _mm256_loadu_si256((const __m256i *)wb->u[s]);
                const __m256i aw = sgn ? _mm256_sign_epi8(w, w) : w;
#pragma GCC unroll 4
                for (int i = 0; i < MM_G8_NX; i++) {
                    __m256i xb = g2_bcast(xq[i] + 32 * b + 4 * s);
                    if (sgn) xb = _mm256_sign_epi8(xb, w);
                    const __m256i p = _mm256_maddubs_epi16(aw, xb);
                    if (fl == 1) {
                        acc[i] = _mm256_add_epi32(acc[i], _mm256_madd_epi16(p, ones));
                        G2_KEEP(acc[i]);
                    } else {
                        a16[i] = (s - s0) % fl == 0 ? p : _mm256_add_epi16(a16[i], p);
                        G2_KEEP(a16[i]);
                        if ((s - s0) % fl == fl - 1) {
                            acc[i] = _mm256_add_epi32(acc[i], _mm256_madd_epi16(a16[i], ones));
                            G2_KEEP(acc[i]);
                        }
                    }
                }
            }
            const __m256 dw = _mm256_loadu_ps(wb->d[h]);
            const int64_t g = split ? 2 * b + h : b;
#pragma GCC unroll 4
            for (int i = 0; i < MM_G8_NX; i++) {
                __m256i is = acc[i];
                if (osh)
                    is = _mm256_sub_epi32(is, _mm256_slli_epi32(_mm256_set1_epi32(xi[i][g]), osh));
                fa[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(is),
                                        _mm256_mul_ps(_mm256_set1_ps(xd[i][b]), dw), fa[i]);
                if (bias)
                    fa[i] = _mm256_fmadd_ps(_mm256_loadu_ps(wb->b[h]),
                                            _mm256_set1_ps(xs[i][g]), fa[i]);
            }
        }
    }
#pragma GCC unroll 4
    for (int i = 0; i < MM_G8_NX; i++) f[i] = fa[i];
}

typedef void (*g2_kernel_fn)(const struct mm_g8_job *j, const struct mm_g8_wblk *wb,
                             int64_t x0, __m256 f[MM_G8_NX]);

#define G2_KERNEL(name, sgn, osh, fl, split, bias)                                        \
    static void name(const struct mm_g8_job *j, const struct mm_g8_wblk *wb, int64_t x0,  \
                     __m256 f[MM_G8_NX])                                                  \
    {                                                                                     \
        g2_body(j, wb, x0, sgn, osh, fl, split, bias, f);                                 \
    }
G2_KERNEL(g2_q8_0, 1, 0, 1, 0, 0)   /* Q8_0, IQ4_NL, IQ4_XS */
G2_KERNEL(g2_q4_0, 0, 3, 8, 0, 0)
G2_KERNEL(g2_q4_k, 0, 0, 8, 0, 1)
G2_KERNEL(g2_q5_k, 0, 0, 4, 0, 1)
G2_KERNEL(g2_q6_k, 0, 5, 2, 1, 0)
G2_KERNEL(g2_q2_k, 0, 0, 4, 1, 1)
G2_KERNEL(g2_q3_k, 0, 2, 4, 1, 0)
#undef G2_KERNEL

static g2_kernel_fn g2_kernel_of(int type)
{
    switch (type) {
    case GGML_TYPE_Q4_0: return g2_q4_0;
    case GGML_TYPE_Q4_K: return g2_q4_k;
    case GGML_TYPE_Q5_K: return g2_q5_k;
    case GGML_TYPE_Q6_K: return g2_q6_k;
    case GGML_TYPE_Q2_K: return g2_q2_k;
    case GGML_TYPE_Q3_K: return g2_q3_k;
    default: return g2_q8_0;
    }
}

void mm_gemm_i8_rows_avx2(const struct mm_g8_job *j, int64_t r0, int64_t r1, int thread)
{
    struct g2_type t;
    KVT_ASSERT(g2_type_of(j->w->type, &t));
    KVT_ASSERT(t.sgn || t.off == (t.osh ? 1 << t.osh : 0));
    KVT_ASSERT(mm_has_bias(j->w->type) == (j->w->type == GGML_TYPE_Q4_K ||
                                           j->w->type == GGML_TYPE_Q5_K ||
                                           j->w->type == GGML_TYPE_Q2_K));
    const g2_kernel_fn kern = g2_kernel_of(j->w->type);
    struct mm_g8_wblk *wb = j->c->gw + (size_t)thread * (size_t)(j->c->max_n_in / 32 + 1);
    for (int64_t r = r0; r < r1; r += MM_G8_NW) {
        g2_pack_w(j, r, t.off, wb);
        const int nr = (int)KVT_MIN((int64_t)MM_G8_NW, r1 - r);
        for (int64_t x0 = 0; x0 < j->mc; x0 += MM_G8_NX) {
            __m256 f[MM_G8_NX];
            kern(j, wb, x0, f);
            const int ni = (int)KVT_MIN((int64_t)MM_G8_NX, j->mc - x0);
            for (int i = 0; i < ni; i++) {
                float *yr = j->y + (size_t)(j->i0 + x0 + i) * (size_t)j->n_out + r;
                if (nr == MM_G8_NW) {
                    _mm256_storeu_ps(yr, f[i]);
                } else {
                    float t8[MM_G8_NW];
                    _mm256_storeu_ps(t8, f[i]);
                    memcpy(yr, t8, (size_t)nr * sizeof(float));
                }
            }
        }
    }
}
