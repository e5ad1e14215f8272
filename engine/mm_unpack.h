/* mm_unpack.h - private: the unpackers of the types a vector set speeds
 * up, written once. Included by mm_portable.c and mm_avx2.c after they
 * define their code extractors (integer work, the same codes on every
 * set):
 *   codes_q4_0(qs, q)     16 bytes -> 32 codes (nibble - 8, low first)
 *   codes_q4_K(qs, q)     128 bytes -> 256 nibbles, 64 per 32 bytes
 *   codes_q5_K(x, q)      a Q5_K block's 256 codes (nibble | qh bit << 4)
 *   codes_q6_K(x, q)      a Q6_K block's 256 codes (6 bits - 32)
 *   codes_2bits(qs, q)    32 bytes -> 128 2-bit fields (Q2_K, Q3_K)
 *   codes_q3_K_high(hm, q)  q -= 4 where the Q3_K high bit is clear
 *   codes_iq4_32(qs, q)   16 bytes -> 32 IQ4 levels
 * and MM_UNPACK_TABLE, the name of the table this defines. The scales
 * come from the same f32 arithmetic on every set; the types without an
 * extractor (Q8_0, Q4_1, Q5_0, Q5_1) are plain C here, which each set's
 * compiler vectorises with its own flags. */
#ifndef MM_UNPACK_TABLE
#error "define MM_UNPACK_TABLE and the codes_* extractors first"
#endif

/* Per-32 scale D (and bias M) of 32-block I as groups of 16. */
static void scales32(int i, float d, float m, float *sc, float *bi)
{
    sc[2 * i] = sc[2 * i + 1] = d;
    bi[2 * i] = bi[2 * i + 1] = m;
}

/* 6-bit scale SC and min MN of sub-block J (0..7) of Q4_K / Q5_K. */
static void scale_min_k4(int j, const uint8_t *q, uint8_t *sc, uint8_t *mn)
{
    if (j < 4) {
        *sc = q[j] & 63;
        *mn = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *mn = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

/* Scales of the 8 sub-blocks of a Q4_K / Q5_K block, as 16 groups. */
static void k4_scales(const uint8_t *scales, float d, float dmin, float *sc, float *bi)
{
    for (int s = 0; s < 8; s++) {
        uint8_t a, b;
        scale_min_k4(s, scales, &a, &b);
        sc[2 * s] = sc[2 * s + 1] = d * a;
        bi[2 * s] = bi[2 * s + 1] = -(dmin * b);
    }
}

/* Plain C in every set (the compiler vectorises it with the set's flags). */

static uint32_t qh_u32(const uint8_t qh[4])
{
    return (uint32_t)qh[0] | (uint32_t)qh[1] << 8 | (uint32_t)qh[2] << 16 |
           (uint32_t)qh[3] << 24;
}

static void up_q8_0(const void *src, int nb, int8_t *q, float *sc, float *bi)
{
    const blk_q8_0 *x = src;
    for (int i = 0; i < nb; i++, q += 32) {
        memcpy(q, x[i].qs, 32);
        scales32(i, MM_H2F(x[i].d), 0, sc, bi);
    }
}

static void up_q4_1(const void *src, int nb, int8_t *q, float *sc, float *bi)
{
    const blk_q4_1 *x = src;
    for (int i = 0; i < nb; i++, q += 32) {
        for (int j = 0; j < 16; j++) {
            q[j] = (int8_t)(x[i].qs[j] & 0xF);
            q[j + 16] = (int8_t)(x[i].qs[j] >> 4);
        }
        scales32(i, MM_H2F(x[i].d), MM_H2F(x[i].m), sc, bi);
    }
}

static void up_q5(const uint8_t *qs, uint32_t qh, int off, int8_t *q)
{
    for (int j = 0; j < 16; j++) {
        q[j] = (int8_t)(((qs[j] & 0xF) | (((qh >> j) & 1) << 4)) - off);
        q[j + 16] = (int8_t)(((qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4)) - off);
    }
}

static void up_q5_0(const void *src, int nb, int8_t *q, float *sc, float *bi)
{
    const blk_q5_0 *x = src;
    for (int i = 0; i < nb; i++, q += 32) {
        up_q5(x[i].qs, qh_u32(x[i].qh), 16, q);
        scales32(i, MM_H2F(x[i].d), 0, sc, bi);
    }
}

static void up_q5_1(const void *src, int nb, int8_t *q, float *sc, float *bi)
{
    const blk_q5_1 *x = src;
    for (int i = 0; i < nb; i++, q += 32) {
        up_q5(x[i].qs, qh_u32(x[i].qh), 0, q);
        scales32(i, MM_H2F(x[i].d), MM_H2F(x[i].m), sc, bi);
    }
}

static void up_q4_0(const void *src, int nb, int8_t *q, float *sc, float *bi)
{
    const blk_q4_0 *x = src;
    for (int i = 0; i < nb; i++, q += 32) {
        codes_q4_0(x[i].qs, q);
        scales32(i, MM_H2F(x[i].d), 0, sc, bi);
    }
}

static void up_q4_K(const void *src, int nb, int8_t *q, float *sc, float *bi)
{
    KVT_ASSERT(nb == 1);
    const blk_q4_K *x = src;
    codes_q4_K(x->qs, q);
    k4_scales(x->scales, MM_H2F(x->d), MM_H2F(x->dmin), sc, bi);
}

static void up_q5_K(const void *src, int nb, int8_t *q, float *sc, float *bi)
{
    KVT_ASSERT(nb == 1);
    const blk_q5_K *x = src;
    codes_q5_K(x, q);
    k4_scales(x->scales, MM_H2F(x->d), MM_H2F(x->dmin), sc, bi);
}

static void up_q6_K(const void *src, int nb, int8_t *q, float *sc, float *bi)
{
    KVT_ASSERT(nb == 1);
    const blk_q6_K *x = src;
    const float d = MM_H2F(x->d);
    codes_q6_K(x, q);
    for (int g = 0; g < 16; g++) {
        sc[g] = d * x->scales[g];
        bi[g] = 0;
    }
}

static void up_q2_K(const void *src, int nb, int8_t *q, float *sc, float *bi)
{
    KVT_ASSERT(nb == 1);
    const blk_q2_K *x = src;
    codes_2bits(x->qs, q);
    codes_2bits(x->qs + 32, q + 128);
    const float d = MM_H2F(x->d), dmin = MM_H2F(x->dmin);
    for (int g = 0; g < 16; g++) {
        sc[g] = d * (float)(x->scales[g] & 0xF);
        bi[g] = -(dmin * (float)(x->scales[g] >> 4));
    }
}

static void up_q3_K(const void *src, int nb, int8_t *q, float *sc, float *bi)
{
    KVT_ASSERT(nb == 1);
    const blk_q3_K *x = src;
    codes_2bits(x->qs, q);
    codes_2bits(x->qs + 32, q + 128);
    codes_q3_K_high(x->hmask, q);
    const float d = MM_H2F(x->d);
    const uint8_t *s = x->scales;
    for (int g = 0; g < 16; g++) {
        const int lo = g < 8 ? (s[g] & 0xF) : (s[g - 8] >> 4);
        const int hi = (s[8 + g % 4] >> (2 * (g / 4))) & 3;
        sc[g] = d * (float)((lo | hi << 4) - 32);
        bi[g] = 0;
    }
}

static void up_iq4_nl(const void *src, int nb, int8_t *q, float *sc, float *bi)
{
    const blk_iq4_nl *x = src;
    for (int i = 0; i < nb; i++, q += 32) {
        codes_iq4_32(x[i].qs, q);
        scales32(i, MM_H2F(x[i].d), 0, sc, bi);
    }
}

static void up_iq4_xs(const void *src, int nb, int8_t *q, float *sc, float *bi)
{
    KVT_ASSERT(nb == 1);
    const blk_iq4_xs *x = src;
    const float d = MM_H2F(x->d);
    for (int s = 0; s < 8; s++) {
        codes_iq4_32(x->qs + 16 * s, q + 32 * s);
        const int ls = ((x->scales_l[s / 2] >> (4 * (s % 2))) & 0xF) |
                       (((x->scales_h >> (2 * s)) & 3) << 4);
        sc[2 * s] = sc[2 * s + 1] = d * (float)(ls - 32);
        bi[2 * s] = bi[2 * s + 1] = 0;
    }
}

const mm_unpack_fn MM_UNPACK_TABLE[GGML_TYPE_COUNT] = {
    [GGML_TYPE_Q8_0] = up_q8_0, [GGML_TYPE_Q4_0] = up_q4_0,
    [GGML_TYPE_Q4_1] = up_q4_1, [GGML_TYPE_Q5_0] = up_q5_0,
    [GGML_TYPE_Q5_1] = up_q5_1, [GGML_TYPE_Q4_K] = up_q4_K,
    [GGML_TYPE_Q5_K] = up_q5_K,    [GGML_TYPE_Q6_K] = up_q6_K,
    [GGML_TYPE_Q2_K] = up_q2_K,    [GGML_TYPE_Q3_K] = up_q3_K,
    [GGML_TYPE_IQ4_NL] = up_iq4_nl, [GGML_TYPE_IQ4_XS] = up_iq4_xs,
};
