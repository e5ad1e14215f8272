/* attn_kern.c - the softmax kernels of attention (attn_kern.h), built once
 * per vector set: -DATTN_SET=avx2 (x86-64-v3) or -DATTN_SET=avx512
 * (x86-64-v4). */
#include "attn_kern.h"

#include <immintrin.h>
#include <math.h>

#if !defined(ATTN_SET) || !defined(__AVX2__) || !defined(__FMA__)
#error "attn_kern.c is built per vector set: -DATTN_SET=avx2 -march=x86-64-v3 (Makefile)"
#endif

#define ATTN_CAT_(a, b) a##_##b
#define ATTN_CAT(a, b) ATTN_CAT_(a, b)

/* exp reduction constants: x = k ln2 + r, |r| <= ln2/2, ln2 split in a
 * high part exact in k * ln2_hi and a low correction */
#define EXP_LOG2E 1.44269504f
#define EXP_LN2_HI 0.693145752f
#define EXP_LN2_LO 1.42860677e-6f
#define EXP_LO (-87.0f) /* below: clamped (exp < 2^-125, flushed by the mask or harmless) */

#if defined(__AVX512F__)

static float row_max(const float *row, int n)
{
    __m512 mx = _mm512_set1_ps(-INFINITY);
    int c = 0;
    for (; c + 16 <= n; c += 16) mx = _mm512_max_ps(mx, _mm512_loadu_ps(row + c));
    if (c < n) {
        __mmask16 k = (__mmask16)((1u << (n - c)) - 1);
        mx = _mm512_max_ps(mx, _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), k, row + c));
    }
    return _mm512_reduce_max_ps(mx);
}

/* 16 lanes; the tail (n % 16) with expf, as before the split into kernel
 * files (bit-identical outputs on this set). */
static float exp_sum(float *row, int n, float m)
{
    int c = 0;
    const __m512 vm = _mm512_set1_ps(m), lo = _mm512_set1_ps(EXP_LO);
    const __m512 log2e = _mm512_set1_ps(EXP_LOG2E);
    const __m512 ln2_hi = _mm512_set1_ps(EXP_LN2_HI), ln2_lo = _mm512_set1_ps(EXP_LN2_LO);
    const __m512 c6 = _mm512_set1_ps(1.0f / 720), c5 = _mm512_set1_ps(1.0f / 120);
    const __m512 c4 = _mm512_set1_ps(1.0f / 24), c3 = _mm512_set1_ps(1.0f / 6);
    const __m512 c2 = _mm512_set1_ps(0.5f), one = _mm512_set1_ps(1.0f);
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    __m512 acc = _mm512_setzero_ps();
    for (; c + 16 <= n; c += 16) {
        __m512 x = _mm512_sub_ps(_mm512_loadu_ps(row + c), vm);
        __mmask16 dead = _mm512_cmp_ps_mask(x, ninf, _CMP_EQ_OQ);
        x = _mm512_max_ps(x, lo);
        __m512 k = _mm512_roundscale_ps(_mm512_mul_ps(x, log2e),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        __m512 r = _mm512_fnmadd_ps(k, ln2_hi, x);
        r = _mm512_fnmadd_ps(k, ln2_lo, r);
        __m512 p = _mm512_fmadd_ps(c6, r, c5);
        p = _mm512_fmadd_ps(p, r, c4);
        p = _mm512_fmadd_ps(p, r, c3);
        p = _mm512_fmadd_ps(p, r, c2);
        p = _mm512_fmadd_ps(p, r, one);
        p = _mm512_fmadd_ps(p, r, one);
        p = _mm512_scalef_ps(p, k);
        p = _mm512_maskz_mov_ps((__mmask16)~dead, p);
        _mm512_storeu_ps(row + c, p);
        acc = _mm512_add_ps(acc, p);
    }
    float sum = _mm512_reduce_add_ps(acc);
    for (; c < n; c++) {
        float p = expf(row[c] - m);
        row[c] = p;
        sum += p;
    }
    return sum;
}

static void scale(float *x, int n, float s)
{
    const __m512 vs = _mm512_set1_ps(s);
    int i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, _mm512_mul_ps(_mm512_loadu_ps(x + i), vs));
    for (; i < n; i++) x[i] *= s;
}


/* the transposed path's vector (attn_kern_t below) */
typedef __m512 V;
#define VL 16
#define QK_MK 12 /* keys per S^T step (24 accumulators) */
#define PV_MD 12 /* hd rows per O^T step */
#define vzero() _mm512_setzero_ps()
#define vload(p) _mm512_loadu_ps(p)
#define vstore(p, x) _mm512_storeu_ps(p, x)
#define vset1(x) _mm512_set1_ps(x)
#define vfma(a, b, c) _mm512_fmadd_ps(a, b, c)
#define vmax(a, b) _mm512_max_ps(a, b)
#define vsub(a, b) _mm512_sub_ps(a, b)
#define vmul(a, b) _mm512_mul_ps(a, b)
#define vadd(a, b) _mm512_add_ps(a, b)
/* 0 in the lanes that are -inf, else x */
#define vzero_ninf(x) _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x, vset1(-INFINITY), _CMP_NEQ_UQ), x)

/* exp(x) for x <= 0; -inf gives 0 (the exp of exp_sum) */
static inline V vexp(V x)
{
    const __mmask16 live = _mm512_cmp_ps_mask(x, vset1(-INFINITY), _CMP_NEQ_UQ);
    x = _mm512_max_ps(x, vset1(EXP_LO));
    V k = _mm512_roundscale_ps(_mm512_mul_ps(x, vset1(EXP_LOG2E)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    V r = _mm512_fnmadd_ps(k, vset1(EXP_LN2_HI), x);
    r = _mm512_fnmadd_ps(k, vset1(EXP_LN2_LO), r);
    V p = vfma(vset1(1.0f / 720), r, vset1(1.0f / 120));
    p = vfma(p, r, vset1(1.0f / 24));
    p = vfma(p, r, vset1(1.0f / 6));
    p = vfma(p, r, vset1(0.5f));
    p = vfma(p, r, vset1(1.0f));
    p = vfma(p, r, vset1(1.0f));
    return _mm512_maskz_mov_ps(live, _mm512_scalef_ps(p, k));
}

#else /* AVX2 + FMA */

static inline float hmax8(__m256 v)
{
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
}

static inline float hsum8(__m256 v)
{
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
}

static float row_max(const float *row, int n)
{
    __m256 m0 = _mm256_set1_ps(-INFINITY), m1 = m0;
    int c = 0;
    for (; c + 16 <= n; c += 16) {
        m0 = _mm256_max_ps(m0, _mm256_loadu_ps(row + c));
        m1 = _mm256_max_ps(m1, _mm256_loadu_ps(row + c + 8));
    }
    for (; c + 8 <= n; c += 8) m0 = _mm256_max_ps(m0, _mm256_loadu_ps(row + c));
    float mx = hmax8(_mm256_max_ps(m0, m1));
    for (; c < n; c++) mx = row[c] > mx ? row[c] : mx;
    return mx;
}

/* exp(x) for x <= 0 in 8 lanes; -inf gives 0. 2^k is built in the
 * exponent field: x >= EXP_LO keeps k >= -126 (a normal number). */
static inline __m256 exp8(__m256 x)
{
    const __m256 dead = _mm256_cmp_ps(x, _mm256_set1_ps(-INFINITY), _CMP_EQ_OQ);
    x = _mm256_max_ps(x, _mm256_set1_ps(EXP_LO));
    __m256 k = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(EXP_LOG2E)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(EXP_LN2_HI), x);
    r = _mm256_fnmadd_ps(k, _mm256_set1_ps(EXP_LN2_LO), r);
    __m256 p = _mm256_fmadd_ps(_mm256_set1_ps(1.0f / 720), r, _mm256_set1_ps(1.0f / 120));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)), 23);
    p = _mm256_mul_ps(p, _mm256_castsi256_ps(e));
    return _mm256_andnot_ps(dead, p);
}

static float exp_sum(float *row, int n, float m)
{
    const __m256 vm = _mm256_set1_ps(m);
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int c = 0;
    for (; c + 16 <= n; c += 16) {
        __m256 p0 = exp8(_mm256_sub_ps(_mm256_loadu_ps(row + c), vm));
        __m256 p1 = exp8(_mm256_sub_ps(_mm256_loadu_ps(row + c + 8), vm));
        _mm256_storeu_ps(row + c, p0);
        _mm256_storeu_ps(row + c + 8, p1);
        a0 = _mm256_add_ps(a0, p0);
        a1 = _mm256_add_ps(a1, p1);
    }
    for (; c + 8 <= n; c += 8) {
        __m256 p0 = exp8(_mm256_sub_ps(_mm256_loadu_ps(row + c), vm));
        _mm256_storeu_ps(row + c, p0);
        a0 = _mm256_add_ps(a0, p0);
    }
    float sum = hsum8(_mm256_add_ps(a0, a1));
    for (; c < n; c++) {
        float p = expf(row[c] - m);
        row[c] = p;
        sum += p;
    }
    return sum;
}

static void scale(float *x, int n, float s)
{
    const __m256 vs = _mm256_set1_ps(s);
    int i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), vs));
    for (; i < n; i++) x[i] *= s;
}


typedef __m256 V;
#define VL 8
#define QK_MK 6 /* 12 accumulators */
#define PV_MD 6
#define vzero() _mm256_setzero_ps()
#define vload(p) _mm256_loadu_ps(p)
#define vstore(p, x) _mm256_storeu_ps(p, x)
#define vset1(x) _mm256_set1_ps(x)
#define vfma(a, b, c) _mm256_fmadd_ps(a, b, c)
#define vmax(a, b) _mm256_max_ps(a, b)
#define vsub(a, b) _mm256_sub_ps(a, b)
#define vmul(a, b) _mm256_mul_ps(a, b)
#define vadd(a, b) _mm256_add_ps(a, b)
#define vzero_ninf(x) _mm256_andnot_ps(_mm256_cmp_ps(x, vset1(-INFINITY), _CMP_EQ_OQ), x)
#define vexp(x) exp8(x)

#endif

/* ---- the transposed path: each kernel step is 2 vectors of columns
 * (ATTN_CB is a multiple of 2 VL) by QK_MK keys or PV_MD rows of hd; the
 * remainders are unrolled apart (a switch on their count). */
_Static_assert(ATTN_CB % (2 * VL) == 0, "column block: whole vector pairs");
#define NVB (ATTN_CB / VL)

/* MK keys x 2 vectors of columns: S^T[i] = k_i . qt columns (the scale
 * is in Q^T: no register held for it, AVX2 has 16) */
static inline __attribute__((always_inline)) void qk_step(int mk, const float *k, int ldk,
                                                         const float *qt, int hd, float *st)
{
    V a0[QK_MK], a1[QK_MK];
#pragma GCC unroll 16
    for (int i = 0; i < mk; i++) a0[i] = a1[i] = vzero();
    for (int d = 0; d < hd; d++) {
        const V q0 = vload(qt + (size_t)d * ATTN_CB), q1 = vload(qt + (size_t)d * ATTN_CB + VL);
#pragma GCC unroll 16
        for (int i = 0; i < mk; i++) {
            const V kb = vset1(k[(size_t)i * (size_t)ldk + (size_t)d]);
            a0[i] = vfma(kb, q0, a0[i]);
            a1[i] = vfma(kb, q1, a1[i]);
        }
    }
#pragma GCC unroll 16
    for (int i = 0; i < mk; i++) {
        vstore(st + (size_t)i * ATTN_CB, a0[i]);
        vstore(st + (size_t)i * ATTN_CB + VL, a1[i]);
    }
}

#define REST_CASES(X) X(1) X(2) X(3) X(4) X(5)
#if QK_MK > 6
#define REST_CASES_HI(X) X(6) X(7) X(8) X(9) X(10) X(11)
#else
#define REST_CASES_HI(X)
#endif

static void qk_rest(int mk, const float *k, int ldk, const float *qt, int hd, float *st)
{
    switch (mk) {
#define QK_CASE(n) case n: qk_step(n, k, ldk, qt, hd, st); break;
    REST_CASES(QK_CASE) REST_CASES_HI(QK_CASE)
#undef QK_CASE
    default: break;
    }
}

static void qk_t(const float *k, int ldk, int n_s, const float *qt, int hd, int ncb, float *st)
{
    for (int cb = 0; cb < ncb; cb++) {
        const float *q = qt + (size_t)cb * (size_t)hd * ATTN_CB;
        float *s = st + (size_t)cb * (size_t)n_s * ATTN_CB;
        int j = 0;
        for (; j + QK_MK <= n_s; j += QK_MK)
            for (int h = 0; h < ATTN_CB; h += 2 * VL)
                qk_step(QK_MK, k + (size_t)j * (size_t)ldk, ldk, q + h, hd,
                        s + (size_t)j * ATTN_CB + h);
        if (j < n_s)
            for (int h = 0; h < ATTN_CB; h += 2 * VL)
                qk_rest(n_s - j, k + (size_t)j * (size_t)ldk, ldk, q + h, hd,
                        s + (size_t)j * ATTN_CB + h);
    }
}

/* MD rows of O^T x 2 vectors of columns += v_j[0..md) p_j over the keys */
static inline __attribute__((always_inline)) void pv_step(int md, const float *v, int ldv, int n_s,
                                                         const float *pt, float *ot)
{
    V a0[PV_MD], a1[PV_MD];
#pragma GCC unroll 16
    for (int i = 0; i < md; i++) a0[i] = a1[i] = vzero();
    for (int j = 0; j < n_s; j++) {
        const V p0 = vload(pt + (size_t)j * ATTN_CB), p1 = vload(pt + (size_t)j * ATTN_CB + VL);
        const float *vj = v + (size_t)j * (size_t)ldv;
#pragma GCC unroll 16
        for (int i = 0; i < md; i++) {
            const V vb = vset1(vj[i]);
            a0[i] = vfma(vb, p0, a0[i]);
            a1[i] = vfma(vb, p1, a1[i]);
        }
    }
#pragma GCC unroll 16
    for (int i = 0; i < md; i++) {
        float *o = ot + (size_t)i * ATTN_CB;
        vstore(o, vadd(vload(o), a0[i]));
        vstore(o + VL, vadd(vload(o + VL), a1[i]));
    }
}

static void pv_rest(int md, const float *v, int ldv, int n_s, const float *pt, float *ot)
{
    switch (md) {
#define PV_CASE(n) case n: pv_step(n, v, ldv, n_s, pt, ot); break;
    REST_CASES(PV_CASE) REST_CASES_HI(PV_CASE)
#undef PV_CASE
    default: break;
    }
}

static void pv_t(const float *v, int ldv, int n_s, const float *pt, int hd, int ncb, float *ot)
{
    for (int cb = 0; cb < ncb; cb++) {
        const float *p = pt + (size_t)cb * (size_t)n_s * ATTN_CB;
        float *o = ot + (size_t)cb * (size_t)hd * ATTN_CB;
        int d = 0;
        for (; d + PV_MD <= hd; d += PV_MD)
            for (int h = 0; h < ATTN_CB; h += 2 * VL)
                pv_step(PV_MD, v + d, ldv, n_s, p + h, o + (size_t)d * ATTN_CB + h);
        if (d < hd)
            for (int h = 0; h < ATTN_CB; h += 2 * VL)
                pv_rest(hd - d, v + d, ldv, n_s, p + h, o + (size_t)d * ATTN_CB + h);
    }
}

/* The sum over the keys of one column vector of P^T, in the order the
 * sgemm path's exp_sum of this set adds a row (so that both paths give
 * the same sum bit for bit): avx512, 16 partial sums by key mod 16, the
 * tree of _mm512_reduce_add_ps (lanes i + i+8, then i + i+4, then
 * i + i+2, then 0 + 1), the keys past the last 16 one by one; avx2, two
 * partial sums of 8 by key mod 16 < 8, added, the 8 lanes as hsum8, the
 * keys past the last 8 one by one. */
static inline V sum_keys(const float *pt, int n_s)
{
#if VL == 16
    V a[16];
#pragma GCC unroll 16
    for (int i = 0; i < 16; i++) a[i] = vzero();
    int j = 0;
    for (; j + 16 <= n_s; j += 16)
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++) a[i] = vadd(a[i], vload(pt + (size_t)(j + i) * ATTN_CB));
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) a[i] = vadd(a[i + 8], a[i]);
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) a[i] = vadd(a[i + 4], a[i]);
    V sum = vadd(vadd(a[0], a[2]), vadd(a[1], a[3]));
#else
    V a[8], b[8];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) a[i] = b[i] = vzero();
    int j = 0;
    for (; j + 16 <= n_s; j += 16)
#pragma GCC unroll 8
        for (int i = 0; i < 8; i++) {
            a[i] = vadd(a[i], vload(pt + (size_t)(j + i) * ATTN_CB));
            b[i] = vadd(b[i], vload(pt + (size_t)(j + 8 + i) * ATTN_CB));
        }
    for (; j + 8 <= n_s; j += 8)
#pragma GCC unroll 8
        for (int i = 0; i < 8; i++) a[i] = vadd(a[i], vload(pt + (size_t)(j + i) * ATTN_CB));
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) a[i] = vadd(a[i], b[i]);
    /* hsum8: lanes i + i+4, then i + i+2, then 0 + 1 */
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) a[i] = vadd(a[i], a[i + 4]);
    V sum = vadd(vadd(a[0], a[2]), vadd(a[1], a[3]));
#endif
    for (; j < n_s; j++) sum = vadd(sum, vload(pt + (size_t)j * ATTN_CB));
    return sum;
}

static void softmax_t(float *st, int n_s, int ncb, float *m, float *l, float *ot, int hd)
{
    for (int cb = 0; cb < ncb; cb++) {
        float *s = st + (size_t)cb * (size_t)n_s * ATTN_CB;
        float *mb = m + (size_t)cb * ATTN_CB, *lb = l + (size_t)cb * ATTN_CB;
        V mx[NVB], sum[NVB], ms[NVB], corr[NVB];
#pragma GCC unroll 8
        for (int u = 0; u < NVB; u++) mx[u] = vload(mb + u * VL);
        for (int j = 0; j < n_s; j++)
#pragma GCC unroll 8
            for (int u = 0; u < NVB; u++) mx[u] = vmax(mx[u], vload(s + (size_t)j * ATTN_CB + u * VL));
#pragma GCC unroll 8
        for (int u = 0; u < NVB; u++) {
            ms[u] = vzero_ninf(mx[u]); /* a column with no key yet: shift 0 */
            corr[u] = vexp(vsub(vload(mb + u * VL), ms[u]));
            vstore(mb + u * VL, mx[u]);
            sum[u] = vzero();
        }
        for (int j = 0; j < n_s; j++)
#pragma GCC unroll 8
            for (int u = 0; u < NVB; u++) {
                float *x = s + (size_t)j * ATTN_CB + u * VL;
                vstore(x, vexp(vsub(vload(x), ms[u])));
            }
#pragma GCC unroll 8
        for (int u = 0; u < NVB; u++) sum[u] = sum_keys(s + u * VL, n_s);
#pragma GCC unroll 8
        for (int u = 0; u < NVB; u++) vstore(lb + u * VL, vfma(vload(lb + u * VL), corr[u], sum[u]));
        float *o = ot + (size_t)cb * (size_t)hd * ATTN_CB;
        for (int d = 0; d < hd; d++)
#pragma GCC unroll 8
            for (int u = 0; u < NVB; u++) {
                float *x = o + (size_t)d * ATTN_CB + u * VL;
                vstore(x, vmul(vload(x), corr[u]));
            }
    }
}

const struct attn_kern ATTN_CAT(attn_kern, ATTN_SET) = { row_max, exp_sum, scale, qk_t, softmax_t, pv_t };
