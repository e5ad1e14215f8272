/* test_rope.c - engine/rope.c against hand-computed values and a naive
 * double-precision reference written from the formulas (llama.cpp's ggml
 * rope_yarn, HF dynamic NTK, Phi-3 LongRoPE), not from rope.c. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/rope.h"
#include "base/kvt.h"
#include "tests/t.h"

/* tiny-kjv: head dim 64, base 10000, trained on 256, extended x8. */
#define D 64
#define NP (D / 2)
#define BASE 10000.0
#define L 256
#define S 8.0

static const int64_t POS[] = { 0, 1, 255, 256, 2047, 100000 };
#define NPOS ((int)(sizeof POS / sizeof POS[0]))

/* ---- the naive reference ------------------------------------------------ */

struct ref {
    int scheme;
    double base, s, attn;        /* attn 0 = default */
    int64_t orig, seq_len, n_hat;
    double beta_fast, beta_slow, ext;
    const float *ff;             /* rope_freqs, or NULL */
    const float *lam_short, *lam_long;
};

static double ref_inv_freq(double base, int i) /* HF: 1 / base^(2i/d) */
{
    return 1.0 / pow(base, (2.0 * i) / D);
}

static double ref_corr_dim(double n_turns, double orig, double base)
{
    return D * log(orig / (n_turns * 2.0 * M_PI)) / (2.0 * log(base));
}

/* angle and magnitude of pair i at position p */
static void ref_angle(const struct ref *r, int64_t p, int i, double *ang,
                      double *mag)
{
    double base = r->base, m = r->attn > 0 ? r->attn : 1.0;
    double ff = r->ff ? r->ff[i] : 1.0;
    double pos = (double)p;
    switch (r->scheme) {
    case ROPE_NONE: *ang = pos * ref_inv_freq(base, i) / ff; break;
    case ROPE_LINEAR: *ang = pos * ref_inv_freq(base, i) / ff / r->s; break;
    case ROPE_NTK:
        *ang = pos * ref_inv_freq(base * pow(r->s, D / (D - 2.0)), i) / ff;
        break;
    case ROPE_DYN_NTK:
        if (r->seq_len > r->orig)
            base *= pow(r->s * (double)r->seq_len / (double)r->orig -
                        (r->s - 1.0), D / (D - 2.0));
        *ang = pos * ref_inv_freq(base, i) / ff;
        break;
    case ROPE_YARN: {
        double extrap = pos * ref_inv_freq(base, i) / ff;
        double interp = extrap * (1.0 / r->s);
        double th = interp;
        if (r->ext != 0.0) {
            double lo = fmax(0.0, floor(ref_corr_dim(r->beta_fast, r->orig, base)));
            double hi = fmin(D - 1.0, ceil(ref_corr_dim(r->beta_slow, r->orig, base)));
            double y = (i - lo) / fmax(0.001, hi - lo);
            double ramp = 1.0 - fmin(1.0, fmax(0.0, y));
            double mix = ramp * r->ext;
            th = interp * (1.0 - mix) + extrap * mix;
            m *= 1.0 + 0.1 * log(r->s);
        }
        *ang = th;
        break;
    }
    case ROPE_LONGROPE: {
        const float *lam = r->seq_len > r->orig ? r->lam_long : r->lam_short;
        if (p < r->n_hat) *ang = pos * ref_inv_freq(base, i) / ff;
        else *ang = pos * ref_inv_freq(base, i) / ff / lam[i];
        if (r->attn == 0.0)
            m = r->s > 1.0 ? sqrt(1.0 + log(r->s) / log((double)r->orig)) : 1.0;
        break;
    }
    default: abort();
    }
    *mag = m;
}

/* Prepare rope.c from the same description. */
static int prep(const struct ref *r, struct rope_table *t)
{
    struct rope_params rp;
    rope_params_default(&rp, D, r->base);
    rp.scheme = r->scheme;
    rp.scale = r->s;
    rp.orig_ctx = r->orig;
    rp.attn_factor = r->attn;
    rp.n_hat = r->n_hat;
    rp.beta_fast = r->beta_fast;
    rp.beta_slow = r->beta_slow;
    rp.ext_factor = r->ext;
    if (r->ff) {
        rp.have_freq_factors = 1;
        memcpy(rp.freq_factors, r->ff, sizeof(float) * NP);
    }
    if (r->lam_short) {
        rp.have_factors = 1;
        memcpy(rp.factors_short, r->lam_short, sizeof(float) * NP);
        memcpy(rp.factors_long, r->lam_long, sizeof(float) * NP);
    }
    return rope_prepare(&rp, r->seq_len, t);
}

static struct ref ref_default(int scheme, int64_t seq_len)
{
    struct ref r = { scheme, BASE, S, 0.0, L, seq_len, 0, 32.0, 1.0, 1.0,
                     NULL, NULL, NULL };
    return r;
}

/* rope_cos_sin at POS against the reference; worst |diff| / magnitude. */
static double compare_ref(const struct ref *r)
{
    struct rope_table t;
    int rc = prep(r, &t);
    T_CHECK(rc == 0);
    if (rc != 0) return 1.0;
    float cs[NPOS * NP], sn[NPOS * NP];
    rope_cos_sin(&t, POS, NPOS, cs, sn);
    double worst = 0.0;
    for (int j = 0; j < NPOS; j++) {
        for (int i = 0; i < NP; i++) {
            double ang, mag;
            ref_angle(r, POS[j], i, &ang, &mag);
            double dc = fabs(cs[j * NP + i] - cos(ang) * mag) / mag;
            double ds = fabs(sn[j * NP + i] - sin(ang) * mag) / mag;
            worst = fmax(worst, fmax(dc, ds));
        }
    }
    return worst;
}

static float LAM_SHORT[NP], LAM_LONG[NP], FF[NP];

static void init_factors(void)
{
    for (int i = 0; i < NP; i++) {
        LAM_SHORT[i] = 1.0f + 0.01f * (float)i;
        LAM_LONG[i] = (float)pow(S, (double)i / (NP - 1)); /* 1 .. 8 */
        FF[i] = i < 8 ? 1.0f : (i < 20 ? 2.5f : 8.0f);
    }
}

/* ---- every scheme against the reference -------------------------------- */

static void test_schemes_vs_reference(void)
{
    const int64_t seqs[] = { 1, 256, 257, 2048, 100001 };
    for (int sch = 0; sch < ROPE_NSCHEMES; sch++) {
        for (size_t k = 0; k < sizeof seqs / sizeof seqs[0]; k++) {
            struct ref r = ref_default(sch, seqs[k]);
            if (sch == ROPE_LONGROPE) {
                r.lam_short = LAM_SHORT;
                r.lam_long = LAM_LONG;
            }
            double w = compare_ref(&r);
            if (!(w <= 1e-6))
                fprintf(stderr, "  scheme %s seq %lld: worst %g\n",
                        rope_scheme_name(sch), (long long)seqs[k], w);
            T_CHECK(w <= 1e-6);
        }
    }
}

static void test_variants_vs_reference(void)
{
    struct ref r;
    /* llama-3 style rope_freqs with plain and with YaRN */
    r = ref_default(ROPE_NONE, 2048);
    r.ff = FF;
    T_CHECK(compare_ref(&r) <= 1e-6);
    r = ref_default(ROPE_YARN, 2048);
    r.ff = FF;
    T_CHECK(compare_ref(&r) <= 1e-6);
    /* YaRN: no ramp (ext 0) is PI with magnitude 1; half ramp; attn x2 */
    r = ref_default(ROPE_YARN, 2048);
    r.ext = 0.0;
    T_CHECK(compare_ref(&r) <= 1e-6);
    r.ext = 0.5;
    T_CHECK(compare_ref(&r) <= 1e-6);
    r.ext = 1.0;
    r.attn = 2.0;
    T_CHECK(compare_ref(&r) <= 1e-6);
    r.beta_fast = 16.0;
    r.beta_slow = 2.0;
    T_CHECK(compare_ref(&r) <= 1e-6);
    /* LongRoPE with the file's attn factor and with n_hat */
    r = ref_default(ROPE_LONGROPE, 2048);
    r.lam_short = LAM_SHORT;
    r.lam_long = LAM_LONG;
    r.attn = 1.5;
    T_CHECK(compare_ref(&r) <= 1e-6);
    r.attn = 0.0;
    r.n_hat = 300;
    T_CHECK(compare_ref(&r) <= 1e-6);
    /* the reference must be able to disagree: plain vs linear */
    struct ref a = ref_default(ROPE_LINEAR, 2048);
    a.scheme = ROPE_NONE; /* rope.c plain ... */
    struct rope_table t;
    T_CHECK(prep(&a, &t) == 0);
    float cs[NP], sn[NP];
    rope_cos_sin(&t, &POS[4], 1, cs, sn);
    double ang, mag;
    a.scheme = ROPE_LINEAR; /* ... against the linear reference */
    ref_angle(&a, POS[4], 5, &ang, &mag);
    T_CHECK(fabs(cs[5] - cos(ang)) > 1e-3);
}

/* ---- hand-computed values ---------------------------------------------- */

static void test_plain_hand_values(void)
{
    struct ref r = ref_default(ROPE_NONE, 256);
    struct rope_table t;
    T_CHECK(prep(&r, &t) == 0);
    T_CHECK(t.mscale == 1.0f);
    float cs[2 * NP], sn[2 * NP];
    const int64_t p[2] = { 0, 1 };
    rope_cos_sin(&t, p, 2, cs, sn);
    for (int i = 0; i < NP; i++) {
        T_CHECK(cs[i] == 1.0f);
        T_CHECK(sn[i] == 0.0f);
    }
    T_NEAR(cs[NP + 0], 0.5403023058681398, 1e-7);   /* cos 1 */
    T_NEAR(sn[NP + 0], 0.8414709848078965, 1e-7);   /* sin 1 */
    T_NEAR(t.freq[1], 0.7498942093324559, 1e-12);   /* 10000^(-1/32) */
    T_NEAR(cs[NP + 1], 0.7317609757987247, 1e-7);
    T_NEAR(sn[NP + 1], 0.6815613503552693, 1e-7);
    rope_cos_sin_range(&t, 2047, 1, cs, sn);
    T_NEAR(cs[0], 0.24971525821383958, 1e-6);
    T_NEAR(sn[0], -0.9683193119086263, 1e-6);
}

static void test_linear_hand_values(void)
{
    struct ref r = ref_default(ROPE_LINEAR, 2048);
    struct rope_table t;
    T_CHECK(prep(&r, &t) == 0);
    T_CHECK(t.mscale == 1.0f);
    T_NEAR(t.freq[0], 0.125, 1e-15);
    T_NEAR(t.freq[1], 0.7498942093324559 / 8.0, 1e-12);
    float cs[NP], sn[NP];
    rope_cos_sin_range(&t, 8, 1, cs, sn); /* pos 8 / 8 = angle 1 */
    T_NEAR(cs[0], 0.5403023058681398, 1e-7);
    T_NEAR(sn[0], 0.8414709848078965, 1e-7);
}

static void test_ntk_base(void)
{
    struct ref r = ref_default(ROPE_NTK, 2048);
    struct rope_table t;
    T_CHECK(prep(&r, &t) == 0);
    /* freq[i] = base'^(-2i/64): recover base' from pairs 1 and 31.
     * 10000 * 8^(64/62) = 10000 * 8 * 8^(1/31) = 85550.376 */
    T_NEAR(pow(t.freq[1], -32.0), 85550.37588568537, 1e-4);
    T_NEAR(pow(t.freq[31], -32.0 / 31.0), 85550.37588568537, 1e-4);
    T_NEAR(t.freq[0], 1.0, 0.0);
    T_CHECK(t.mscale == 1.0f);
}

static void test_dynamic_ntk(void)
{
    struct rope_table plain, t;
    struct ref r = ref_default(ROPE_NONE, 256);
    T_CHECK(prep(&r, &plain) == 0);
    for (int64_t n = 1; n <= 256; n += 255) {
        r = ref_default(ROPE_DYN_NTK, n);
        T_CHECK(prep(&r, &t) == 0);
        for (int i = 0; i < NP; i++) T_CHECK(t.freq[i] == plain.freq[i]);
    }
    /* n = 512: s' = 8*2 - 7 = 9, base' = 10000 * 9^(32/31) = 96610.54 */
    r = ref_default(ROPE_DYN_NTK, 512);
    T_CHECK(prep(&r, &t) == 0);
    T_NEAR(pow(t.freq[1], -32.0), 96610.54362338936, 1e-4);
    /* the base grows (low frequencies fall) with the sequence length */
    double prev = plain.freq[NP - 1];
    for (int64_t n = 257; n <= 1 << 20; n *= 2) {
        r = ref_default(ROPE_DYN_NTK, n);
        T_CHECK(prep(&r, &t) == 0);
        T_CHECK(t.freq[NP - 1] < prev);
        T_CHECK(t.freq[0] == 1.0);
        prev = t.freq[NP - 1];
    }
}

static void test_yarn_corr_dims(void)
{
    double d[2];
    /* 64 ln(256/(64 pi)) / (2 ln 1e4) = 0.839 -> 0;
     * 64 ln(256/(2 pi)) / (2 ln 1e4) = 12.88 -> 13 */
    rope_yarn_corr_dims(64, 256, 10000.0, 32.0, 1.0, d);
    T_CHECK(d[0] == 0.0);
    T_CHECK(d[1] == 13.0);
    /* llama 2: 128 dims, 4096: 20.94 -> 20, 45.03 -> 46 */
    rope_yarn_corr_dims(128, 4096, 10000.0, 32.0, 1.0, d);
    T_CHECK(d[0] == 20.0);
    T_CHECK(d[1] == 46.0);
    /* clamps: orig 16 gives -8.79 -> 0 and 3.25 -> 4; orig 1e12 high */
    rope_yarn_corr_dims(64, 16, 10000.0, 32.0, 1.0, d);
    T_CHECK(d[0] == 0.0);
    T_CHECK(d[1] == 4.0);
    rope_yarn_corr_dims(64, 1000000000000LL, 10000.0, 32.0, 1.0, d);
    T_CHECK(d[1] == 63.0);
}

static void test_yarn_hand_values(void)
{
    struct ref r = ref_default(ROPE_YARN, 2048);
    struct rope_table t;
    T_CHECK(prep(&r, &t) == 0);
    T_NEAR(t.mscale, 1.2079441541679836, 1e-7); /* 1 + 0.1 ln 8 */
    const double th1 = 0.7498942093324559;
    T_NEAR(t.freq[0], 1.0, 1e-15);                 /* ramp 1: extrapolate */
    T_NEAR(t.freq[1], th1 * (12.0 / 13.0 + 1.0 / (8.0 * 13.0)), 1e-12);
    for (int i = 13; i < NP; i++)                  /* ramp 0: interpolate */
        T_NEAR(t.freq[i] * 8.0, pow(BASE, -2.0 * i / D), 1e-15);
    T_CHECK(t.freq[12] * 8.0 > pow(BASE, -24.0 / D) * 1.01);
    /* ext_factor 0: llama.cpp's linear path, magnitude attn_factor only */
    r.ext = 0.0;
    T_CHECK(prep(&r, &t) == 0);
    T_CHECK(t.mscale == 1.0f);
    T_NEAR(t.freq[0], 0.125, 1e-15);
}

/* mscale_mult multiplies LongRoPE's magnitude (the default or attn_factor),
 * not the frequencies; 0 leaves it; other schemes ignore it. */
static void test_longrope_mscale_mult(void)
{
    struct rope_params rp;
    struct rope_table t0, t1;
    rope_params_default(&rp, D, BASE);
    rp.scheme = ROPE_LONGROPE;
    rp.scale = S;
    rp.orig_ctx = L;
    rp.have_factors = 1;
    memcpy(rp.factors_short, LAM_SHORT, sizeof(float) * NP);
    memcpy(rp.factors_long, LAM_LONG, sizeof(float) * NP);
    T_CHECK(rope_prepare(&rp, 4 * L, &t0) == 0);
    rp.mscale_mult = 0.9;
    T_CHECK(rope_prepare(&rp, 4 * L, &t1) == 0);
    /* 0.9 sqrt(1 + ln 8 / ln 256) = 0.9 sqrt(11/8) */
    T_NEAR(t1.mscale, 0.9 * 1.1726039399558574, 1e-7);
    T_CHECK(t0.mscale == (float)1.1726039399558574);
    for (int i = 0; i < NP; i++) T_CHECK(t1.freq[i] == t0.freq[i]);
    rp.attn_factor = 1.5; /* an explicit magnitude is multiplied too */
    T_CHECK(rope_prepare(&rp, 4 * L, &t1) == 0);
    T_NEAR(t1.mscale, 1.35, 1e-7);
    rp.scheme = ROPE_LINEAR; /* not LongRoPE: ignored */
    rp.attn_factor = 0.0;
    T_CHECK(rope_prepare(&rp, 4 * L, &t1) == 0);
    T_CHECK(t1.mscale == 1.0f);
}

static void test_longrope_selection(void)
{
    struct ref r = ref_default(ROPE_LONGROPE, L);
    r.lam_short = LAM_SHORT;
    r.lam_long = LAM_LONG;
    struct rope_table t;
    T_CHECK(prep(&r, &t) == 0);
    T_CHECK(t.long_factors == 0);
    T_NEAR(t.freq[3], pow(BASE, -6.0 / D) / LAM_SHORT[3], 1e-15);
    /* sqrt(1 + ln 8 / ln 256) = sqrt(1 + 3/8) */
    T_NEAR(t.mscale, 1.1726039399558574, 1e-7);
    r.seq_len = L + 1;
    T_CHECK(prep(&r, &t) == 0);
    T_CHECK(t.long_factors == 1);
    T_NEAR(t.freq[NP - 1] * 8.0, pow(BASE, -2.0 * (NP - 1) / D), 1e-15);
    /* scale 1: magnitude 1 */
    r.s = 1.0;
    T_CHECK(prep(&r, &t) == 0);
    T_CHECK(t.mscale == 1.0f);
    /* n_hat: positions below use the unscaled frequency */
    r = ref_default(ROPE_LONGROPE, 2048);
    r.lam_short = LAM_SHORT;
    r.lam_long = LAM_LONG;
    r.n_hat = 100;
    r.attn = 1.0;
    T_CHECK(prep(&r, &t) == 0);
    float cs[2 * NP], sn[2 * NP];
    rope_cos_sin_range(&t, 99, 2, cs, sn);
    const double th = pow(BASE, -2.0 * (NP - 1) / D);
    T_NEAR(cs[NP - 1], cos(99.0 * th), 1e-7);
    T_NEAR(cs[2 * NP - 1], cos(100.0 * th / 8.0), 1e-7);
}

/* ---- rotation ----------------------------------------------------------- */

static void test_rotate_hand_layouts(void)
{
    struct rope_params rp;
    struct rope_table t;
    rope_params_default(&rp, 4, BASE);
    T_CHECK(rope_prepare(&rp, 1, &t) == 0);
    const float cs[2] = { 0.0f, 0.6f }, sn[2] = { 1.0f, 0.8f };
    /* two heads of 6 dims, n_rot 4: dims 4, 5 pass through */
    float x[12] = { 1, 2, 3, 4, 5, 6, -1, 0, 0, 1, 7, 8 };
    rope_rotate(&t, x, 2, 6, cs, sn);
    /* adjacent: (1,2) by 90 deg -> (-2,1); (3,4) -> (3*.6-4*.8, 3*.8+4*.6) */
    const float ea[12] = { -2, 1, -1.4f, 4.8f, 5, 6, 0, -1, -0.8f, 0.6f, 7, 8 };
    for (int i = 0; i < 12; i++) T_NEAR(x[i], ea[i], 1e-6);

    rp.neox = 1;
    T_CHECK(rope_prepare(&rp, 1, &t) == 0);
    float y[12] = { 1, 2, 3, 4, 5, 6, -1, 0, 0, 1, 7, 8 };
    rope_rotate(&t, y, 2, 6, cs, sn);
    /* neox: pairs (x0,x2) = (1,3) -> (-3,1); (x1,x3) = (2,4) -> (-2,4) */
    const float en[12] = { -3, -2, 1, 4, 5, 6, 0, -0.8f, -1, 0.6f, 7, 8 };
    for (int i = 0; i < 12; i++) T_NEAR(y[i], en[i], 1e-6);
}

static void test_rotate_norm_and_inverse(void)
{
    const int hd = 80, nh = 3; /* n_rot 64 of 80 dims */
    for (int neox = 0; neox <= 1; neox++) {
        for (int sch = ROPE_NONE; sch <= ROPE_YARN; sch += ROPE_YARN) {
            struct ref r = ref_default(sch, 2048);
            struct rope_table t;
            T_CHECK(prep(&r, &t) == 0);
            t.neox = neox;
            float x[3 * 80], x0[3 * 80], cs[NP], sn[NP], nsn[NP];
            uint32_t seed = 12345u + (uint32_t)neox;
            for (int i = 0; i < nh * hd; i++) {
                seed = seed * 1664525u + 1013904223u;
                x0[i] = x[i] = (float)((seed >> 8) & 0xffff) / 32768.0f - 1.0f;
            }
            for (int j = 0; j < NPOS; j++) {
                memcpy(x, x0, sizeof x);
                rope_cos_sin(&t, &POS[j], 1, cs, sn);
                rope_rotate(&t, x, nh, hd, cs, sn);
                const double m = t.mscale;
                for (int h = 0; h < nh; h++) {
                    double n0 = 0, n1 = 0;
                    for (int i = 0; i < D; i++) {
                        n0 += (double)x0[h * hd + i] * x0[h * hd + i];
                        n1 += (double)x[h * hd + i] * x[h * hd + i];
                    }
                    T_NEAR(sqrt(n1), m * sqrt(n0), 1e-5 * sqrt(n0));
                    for (int i = D; i < hd; i++)
                        T_CHECK(x[h * hd + i] == x0[h * hd + i]);
                }
                /* inverse rotation: transpose = negated sin, then / m^2 */
                for (int i = 0; i < NP; i++) nsn[i] = -sn[i];
                rope_rotate(&t, x, nh, hd, cs, nsn);
                double worst = 0.0; /* rotated dims carry m^2 */
                for (int i = 0; i < nh * hd; i++) {
                    double back = i % hd < D ? x[i] / (m * m) : x[i];
                    worst = fmax(worst, fabs(back - x0[i]));
                }
                T_NEAR(worst, 0.0, 2e-6);
            }
            /* pos 0 with mscale 1 is the identity */
            if (sch == ROPE_NONE) {
                memcpy(x, x0, sizeof x);
                rope_cos_sin_range(&t, 0, 1, cs, sn);
                rope_rotate(&t, x, nh, hd, cs, sn);
                T_CHECK(memcmp(x, x0, sizeof x) == 0);
            }
        }
    }
}

/* The range form (recurrence between exact rows) agrees with the list
 * form to the last float bit or so, across block and n_hat boundaries. */
static void test_range_matches_list(void)
{
    enum { N = 70 };
    static float a[N * NP], b[N * NP], c[N * NP], d[N * NP];
    const int64_t starts[] = { 0, 90, 99990, 123456789 };
    for (int v = 0; v < 2; v++) {
        struct ref r = ref_default(v ? ROPE_LONGROPE : ROPE_YARN, 4096);
        r.lam_short = LAM_SHORT;
        r.lam_long = LAM_LONG;
        r.n_hat = v ? 100 : 0;
        struct rope_table t;
        T_CHECK(prep(&r, &t) == 0);
        for (size_t k = 0; k < sizeof starts / sizeof starts[0]; k++) {
            int64_t pos[N];
            for (int j = 0; j < N; j++) pos[j] = starts[k] + j;
            rope_cos_sin(&t, pos, N, a, b);
            rope_cos_sin_range(&t, starts[k], N, c, d);
            double worst = 0.0;
            for (int i = 0; i < N * NP; i++)
                worst = fmax(worst, fmax(fabs(a[i] - c[i]), fabs(b[i] - d[i])));
            T_NEAR(worst, 0.0, 3e-7);
            /* and one row against the reference directly */
            double ang, mag;
            ref_angle(&r, starts[k] + N - 1, 7, &ang, &mag);
            T_NEAR(c[(N - 1) * NP + 7], cos(ang) * mag, 2e-6);
            T_NEAR(d[(N - 1) * NP + 7], sin(ang) * mag, 2e-6);
        }
    }
}

/* ---- parameters, names -------------------------------------------------- */

static void test_prepare_rejects(void)
{
    struct rope_params rp;
    struct rope_table t;
#define BAD(stmt)                                                            \
    do {                                                                     \
        rope_params_default(&rp, D, BASE);                                   \
        rp.scheme = ROPE_YARN;                                               \
        rp.scale = S;                                                        \
        rp.orig_ctx = L;                                                     \
        T_CHECK(rope_prepare(&rp, 2048, &t) == 0);                           \
        stmt;                                                                \
        T_CHECK(rope_prepare(&rp, 2048, &t) == KVT_ERANGE);                  \
    } while (0)
    BAD(rp.n_rot = 63);
    BAD(rp.n_rot = 0);
    BAD(rp.n_rot = 2 * ROPE_MAX_PAIRS + 2);
    BAD(rp.scheme = ROPE_NSCHEMES);
    BAD(rp.scheme = -1);
    BAD(rp.scale = 0.5);
    BAD(rp.scale = NAN);
    BAD(rp.freq_base = 1.0);
    BAD(rp.freq_base = INFINITY);
    BAD(rp.orig_ctx = 0);
    BAD(rp.attn_factor = -1.0);
    BAD(rp.beta_slow = 0.0);
    BAD(rp.ext_factor = NAN);
    BAD(rp.n_hat = -1);
    BAD(rp.mscale_mult = -0.5);
    BAD(rp.mscale_mult = NAN);
    BAD((rp.have_freq_factors = 1, rp.freq_factors[0] = 1.0f));
    BAD(rp.scheme = ROPE_LONGROPE); /* no factors */
    BAD((rp.scheme = ROPE_LONGROPE, rp.have_factors = 1,
         rp.factors_short[0] = 1.0f)); /* the other 31 are 0 */
    BAD(rp.scheme = ROPE_DYN_NTK; rp.orig_ctx = 0);
#undef BAD
    rope_params_default(&rp, D, BASE);
    T_CHECK(rope_prepare(&rp, -1, &t) == KVT_ERANGE);
    T_CHECK(rope_prepare(&rp, 0, &t) == 0);
    rp.scale = 0.25; /* ignored by plain RoPE */
    T_CHECK(rope_prepare(&rp, 0, &t) == 0);
    rp.n_rot = 2 * ROPE_MAX_PAIRS;
    T_CHECK(rope_prepare(&rp, 0, &t) == 0);
}

static void test_scheme_names(void)
{
    for (int s = 0; s < ROPE_NSCHEMES; s++)
        T_CHECK(rope_scheme_parse(rope_scheme_name(s)) == s);
    T_CHECK(rope_scheme_parse("yarn") == ROPE_YARN);
    T_CHECK(rope_scheme_parse("linear") == ROPE_LINEAR);
    T_CHECK(rope_scheme_parse("longrope") == ROPE_LONGROPE);
    T_CHECK(rope_scheme_parse("su") == ROPE_LONGROPE);
    T_CHECK(rope_scheme_parse("dynamic") == ROPE_DYN_NTK);
    T_CHECK(rope_scheme_parse("yarnx") == -1);
    T_CHECK(rope_scheme_parse("") == -1);
    T_CHECK(strcmp(rope_scheme_name(ROPE_NSCHEMES), "unknown") == 0);
}

/* ---- factor files ------------------------------------------------------- */

static int parse_str(const char *s, float *out, int max, int *n)
{
    return rope_factors_parse(s, strlen(s), out, max, n);
}

static void test_factors_formats(void)
{
    float f[8];
    int n = -1;
    T_CHECK(parse_str("# long factors\n1.0\n\n1.25  # x\n2e0\r\n", f, 8, &n) == 0);
    T_CHECK(n == 3);
    T_CHECK(f[0] == 1.0f && f[1] == 1.25f && f[2] == 2.0f);
    n = -1;
    T_CHECK(parse_str("[1.0, 1.02,\n 1.5, 4]\n", f, 8, &n) == 0);
    T_CHECK(n == 4);
    T_CHECK(f[0] == 1.0f && f[1] == 1.02f && f[2] == 1.5f && f[3] == 4.0f);
    T_CHECK(parse_str("[1. 1.5\n 2.]", f, 8, &n) == 0); /* numpy print */
    T_CHECK(n == 3 && f[2] == 2.0f);
    T_CHECK(parse_str("[3,]", f, 8, &n) == 0);
    T_CHECK(n == 1 && f[0] == 3.0f);
    /* exactly full */
    T_CHECK(parse_str("1 2 3 4 5 6 7 8", f, 8, &n) == 0);
    T_CHECK(n == 8 && f[7] == 8.0f);
    /* len, not NUL, ends the text */
    const char *s = "1.5 2.5";
    T_CHECK(rope_factors_parse(s, 3, f, 8, &n) == 0);
    T_CHECK(n == 1 && f[0] == 1.5f);
}

static void test_factors_junk(void)
{
    float f[4];
    int n = 7;
    const char *fmt[] = {
        "", "  \n# nothing\n", "1.0 abc", "1.0x", "[1, 2", "]", "1 ]",
        "[1][2]", "[1] 2", "1 [2]", "[[1]]", "1;2", "--1",
    };
    for (size_t i = 0; i < sizeof fmt / sizeof fmt[0]; i++) {
        int rc = parse_str(fmt[i], f, 4, &n);
        if (rc != KVT_EFORMAT) fprintf(stderr, "  junk '%s': %d\n", fmt[i], rc);
        T_CHECK(rc == KVT_EFORMAT);
        T_CHECK(n == 0);
    }
    const char *rng[] = { "0", "1 -1", "nan", "inf", "1e50", "1e-60",
                          "1 2 3 4 5" };
    for (size_t i = 0; i < sizeof rng / sizeof rng[0]; i++) {
        int rc = parse_str(rng[i], f, 4, &n);
        if (rc != KVT_ERANGE) fprintf(stderr, "  range '%s': %d\n", rng[i], rc);
        T_CHECK(rc == KVT_ERANGE);
    }
    const char nul[] = { '1', '\0', '2' }; /* an embedded NUL is junk */
    T_CHECK(rope_factors_parse(nul, 3, f, 4, &n) == KVT_EFORMAT);
    char big[100];
    memset(big, '1', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    T_CHECK(parse_str(big, f, 4, &n) == KVT_EFORMAT); /* 99-digit token */
}

static void test_factors_model_file(void)
{
    FILE *fp = fopen(T_MODEL("longrope-long-factors.txt"), "rb");
    T_REQUIRE(fp != NULL, "models/longrope-long-factors.txt missing");
    static char buf[1 << 16];
    size_t len = fread(buf, 1, sizeof buf, fp);
    fclose(fp);
    T_CHECK(len > 0 && len < sizeof buf);
    float f[ROPE_MAX_PAIRS];
    int n = 0;
    T_CHECK(rope_factors_parse(buf, len, f, ROPE_MAX_PAIRS, &n) == 0);
    T_CHECK(n == 32);
    T_CHECK(f[0] == 1.0f);
    T_CHECK(f[31] == 8.0f);
    T_NEAR(f[1], 1.06938, 1e-6); /* 8^(1/31) */
    for (int i = 1; i < n; i++) T_CHECK(f[i] > f[i - 1]);
    /* too small a buffer is a range error, not a silent truncation */
    T_CHECK(rope_factors_parse(buf, len, f, 31, &n) == KVT_ERANGE);
}

int main(void)
{
    init_factors();
    T_RUN(test_schemes_vs_reference);
    T_RUN(test_variants_vs_reference);
    T_RUN(test_plain_hand_values);
    T_RUN(test_linear_hand_values);
    T_RUN(test_ntk_base);
    T_RUN(test_dynamic_ntk);
    T_RUN(test_yarn_corr_dims);
    T_RUN(test_yarn_hand_values);
    T_RUN(test_longrope_selection);
    T_RUN(test_longrope_mscale_mult);
    T_RUN(test_rotate_hand_layouts);
    T_RUN(test_rotate_norm_and_inverse);
    T_RUN(test_range_matches_list);
    T_RUN(test_prepare_rejects);
    T_RUN(test_scheme_names);
    T_RUN(test_factors_formats);
    T_RUN(test_factors_junk);
    T_RUN(test_factors_model_file);
    return t_done();
}
