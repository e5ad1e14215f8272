/* rope.c - rotary position encodings and their long-context scalings.
 *
 * rope_prepare() does all the per-scheme work once per evaluation: it
 * reduces every scheme to one angular frequency per pair (radians per
 * position, double) plus one magnitude. The hot calls (rope_cos_sin*,
 * rope_rotate) are then scheme-free: angle = pos * freq[i].
 *
 * Matching llama.cpp (ggml rope_yarn, ggml-cpu ops): ggml's angle for pair i
 * is theta_extrap = pos * base^(-2i/n_rot) / ff_i (ff = rope_freqs or
 * LongRoPE factors), theta_interp = freq_scale * theta_extrap, and with
 * ext_factor != 0 a per-pair mix by rope_yarn_ramp. Every term is linear in
 * pos, so the same angle is pos * freq[i] with freq[i] computed here. ggml
 * accumulates theta in float; we use double, which agrees to float precision
 * for moderate angles and is the more accurate of the two for large ones.
 */
#include "rope.h"

#include <errno.h>
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../base/cpu.h"
#include "../base/kvt.h"

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

static const char *const rope_names[ROPE_NSCHEMES] = {
    "none", "linear", "ntk", "dynamic-ntk", "yarn", "longrope",
};
_Static_assert(sizeof rope_names / sizeof rope_names[0] == ROPE_NSCHEMES,
               "scheme name table length");

void rope_params_default(struct rope_params *rp, int n_rot, double freq_base)
{
    KVT_ASSERT(rp != NULL);
    memset(rp, 0, sizeof *rp);
    rp->scheme = ROPE_NONE;
    rp->n_rot = n_rot;
    rp->neox = 0;
    rp->freq_base = freq_base;
    rp->scale = 1.0;
    rp->orig_ctx = 0;
    rp->attn_factor = 0.0; /* the scheme's default */
    rp->beta_fast = 32.0;
    rp->beta_slow = 1.0;
    rp->ext_factor = 1.0;
    rp->n_hat = 0;
}

/* llama.cpp's corr_dim, in float like ggml so that floor/ceil land on the
 * same integers: the pair index at which a wavelength makes n_turns turns
 * over the original context. */
static float yarn_corr_dim(int n_rot, float orig_ctx, float n_turns,
                           float base)
{
    return (float)n_rot * logf(orig_ctx / (n_turns * 2.0f * (float)M_PI)) /
           (2.0f * logf(base));
}

void rope_yarn_corr_dims(int n_rot, int64_t orig_ctx, double freq_base,
                         double beta_fast, double beta_slow, double dims[2])
{
    KVT_ASSERT(dims != NULL);
    float lo = floorf(yarn_corr_dim(n_rot, (float)orig_ctx, (float)beta_fast,
                                    (float)freq_base));
    float hi = ceilf(yarn_corr_dim(n_rot, (float)orig_ctx, (float)beta_slow,
                                   (float)freq_base));
    dims[0] = KVT_MAX(0.0, (double)lo);
    dims[1] = KVT_MIN((double)(n_rot - 1), (double)hi);
}

/* 1 at pairs below low (extrapolate), 0 above high (interpolate), linear in
 * between; as ggml's rope_yarn_ramp with i0 / 2 == pair. */
static double yarn_ramp(double low, double high, int pair)
{
    double y = ((double)pair - low) / KVT_MAX(0.001, high - low);
    return 1.0 - KVT_MIN(1.0, KVT_MAX(0.0, y));
}

static int finite_pos(double v) { return isfinite(v) && v > 0.0; }

static int factors_ok(const float *f, int n)
{
    for (int i = 0; i < n; i++)
        if (!finite_pos((double)f[i])) return 0;
    return 1;
}

/* @return 0 or KVT_ERANGE: parameters come from GGUF metadata or the
 * command line, so inconsistency is an operating error, not a bug. */
static int check_params(const struct rope_params *rp, int64_t seq_len)
{
    const int sch = rp->scheme;
    if (sch < 0 || sch >= ROPE_NSCHEMES) return KVT_ERANGE;
    if (rp->n_rot < 2 || rp->n_rot % 2 != 0) return KVT_ERANGE;
    if (rp->n_rot > 2 * ROPE_MAX_PAIRS) return KVT_ERANGE;
    if (!isfinite(rp->freq_base) || !(rp->freq_base > 1.0)) return KVT_ERANGE;
    if (seq_len < 0 || rp->n_hat < 0) return KVT_ERANGE;
    if (!isfinite(rp->attn_factor) || rp->attn_factor < 0.0) return KVT_ERANGE;
    if (!isfinite(rp->mscale_mult) || rp->mscale_mult < 0.0) return KVT_ERANGE;
    if (sch != ROPE_NONE && (!isfinite(rp->scale) || !(rp->scale >= 1.0)))
        return KVT_ERANGE;
    if ((sch == ROPE_DYN_NTK || sch == ROPE_YARN) && rp->orig_ctx < 1)
        return KVT_ERANGE;
    if (sch == ROPE_LONGROPE && rp->orig_ctx < 2) return KVT_ERANGE;
    if (sch == ROPE_YARN) {
        if (!finite_pos(rp->beta_fast) || !finite_pos(rp->beta_slow))
            return KVT_ERANGE;
        if (!isfinite(rp->ext_factor) || rp->ext_factor < 0.0)
            return KVT_ERANGE;
    }
    const int np = rp->n_rot / 2;
    if (sch == ROPE_LONGROPE) {
        if (!rp->have_factors) return KVT_ERANGE;
        if (!factors_ok(rp->factors_short, np)) return KVT_ERANGE;
        if (!factors_ok(rp->factors_long, np)) return KVT_ERANGE;
    }
    if (rp->have_freq_factors && !factors_ok(rp->freq_factors, np))
        return KVT_ERANGE;
    return 0;
}

/* The base after NTK-style rescaling (unchanged for other schemes). */
static double scaled_base(const struct rope_params *rp, int64_t seq_len)
{
    const double d = (double)rp->n_rot;
    const double ex = d / (d - 2.0);
    if (rp->scheme == ROPE_NTK) return rp->freq_base * pow(rp->scale, ex);
    if (rp->scheme == ROPE_DYN_NTK) {
        double s = rp->scale;
        double sp = s * (double)seq_len / (double)rp->orig_ctx - (s - 1.0);
        if (sp > 1.0) return rp->freq_base * pow(sp, ex);
    }
    return rp->freq_base;
}

int rope_prepare(const struct rope_params *rp, int64_t seq_len,
                 struct rope_table *t)
{
    KVT_ASSERT(rp != NULL);
    KVT_ASSERT(t != NULL);
    int rc = check_params(rp, seq_len);
    if (rc < 0) return rc;

    const int np = rp->n_rot / 2;
    const int sch = rp->scheme;
    const double d = (double)rp->n_rot;
    const double base = scaled_base(rp, seq_len);
    double mscale = rp->attn_factor > 0.0 ? rp->attn_factor : 1.0;

    memset(t, 0, sizeof *t);
    t->n_rot = rp->n_rot;
    t->neox = rp->neox ? 1 : 0;
    t->long_factors = sch == ROPE_LONGROPE && seq_len > rp->orig_ctx;
    t->n_hat = sch == ROPE_LONGROPE ? rp->n_hat : 0;

    double corr[2] = { 0.0, 0.0 };
    const int yarn_mix = sch == ROPE_YARN && rp->ext_factor != 0.0;
    if (yarn_mix) {
        rope_yarn_corr_dims(rp->n_rot, rp->orig_ctx, rp->freq_base,
                            rp->beta_fast, rp->beta_slow, corr);
        mscale *= 1.0 + 0.1 * log(rp->scale); /* ln(1 / freq_scale) */
    }
    if (sch == ROPE_LONGROPE && rp->attn_factor == 0.0 && rp->scale > 1.0)
        mscale = sqrt(1.0 + log(rp->scale) / log((double)rp->orig_ctx));
    if (sch == ROPE_LONGROPE && rp->mscale_mult > 0.0) mscale *= rp->mscale_mult;

    for (int i = 0; i < np; i++) {
        const double ff = rp->have_freq_factors ? rp->freq_factors[i] : 1.0;
        const double ex = -2.0 * (double)i / d;
        const double orig = pow(rp->freq_base, ex) / ff;
        const double extrap = pow(base, ex) / ff;
        double f = extrap;
        switch (sch) {
        case ROPE_LINEAR: f = extrap / rp->scale; break;
        case ROPE_YARN: {
            const double interp = extrap / rp->scale;
            f = interp;
            if (yarn_mix) {
                double mix = yarn_ramp(corr[0], corr[1], i) * rp->ext_factor;
                f = interp * (1.0 - mix) + extrap * mix;
            }
            break;
        }
        case ROPE_LONGROPE:
            f = extrap / (double)(t->long_factors ? rp->factors_long[i]
                                                  : rp->factors_short[i]);
            break;
        default: break; /* NONE, NTK, DYN_NTK: the base carries it */
        }
        t->freq[i] = f;
        t->freq_orig[i] = orig;
    }
    t->mscale = (float)mscale;
    return 0;
}

/* One (n_rot/2) row of cos/sin for position pos. */
static void cos_sin_row(const struct rope_table *t, int64_t pos, float *cs,
                        float *sn)
{
    KVT_ASSERT(pos >= 0);
    const int np = t->n_rot / 2;
    const double *f = pos < t->n_hat ? t->freq_orig : t->freq;
    const double m = (double)t->mscale;
    const double p = (double)pos;
    for (int i = 0; i < np; i++) {
        double s, c;
        sincos(p * f[i], &s, &c);
        cs[i] = (float)(c * m);
        sn[i] = (float)(s * m);
    }
}

void rope_cos_sin(const struct rope_table *t, const int64_t *pos, int n,
                  float *cs, float *sn)
{
    KVT_ASSERT(t != NULL);
    KVT_ASSERT(n >= 0);
    KVT_ASSERT(n == 0 || (pos != NULL && cs != NULL && sn != NULL));
    const size_t np = (size_t)(t->n_rot / 2);
    for (int j = 0; j < n; j++)
        cos_sin_row(t, pos[j], cs + (size_t)j * np, sn + (size_t)j * np);
}

/* Consecutive positions step each pair's angle by freq[i]: between exact
 * sincos() rows every ROPE_EXACT_EVERY positions, rows come from the
 * angle-addition recurrence in double (error ~1e-15 per step, far below
 * float), about 4x cheaper than sincos() at large angles. */
#define ROPE_EXACT_EVERY 16

/* One row out: cos/sin times the magnitude, rounded to float. */
static void range_out(int np, const double *c, const double *s, double m, float *cr,
                      float *sr)
{
    for (int i = 0; i < np; i++) {
        cr[i] = (float)(c[i] * m);
        sr[i] = (float)(s[i] * m);
    }
}

/* One step of the recurrence and its row, 4 pairs a time: the scalar
 * loop's products, differences and sums in double (no FMA), and the same
 * rounding to float, so the same floats. */
__attribute__((target("avx2"))) static void range_step_avx2(int np, double *c, double *s,
                                                            const double *step_c,
                                                            const double *step_s, double m,
                                                            float *cr, float *sr)
{
    int i = 0;
    const __m256d vm = _mm256_set1_pd(m);
    for (; i + 4 <= np; i += 4) {
        __m256d ci = _mm256_loadu_pd(c + i), si = _mm256_loadu_pd(s + i);
        __m256d sc = _mm256_loadu_pd(step_c + i), ss = _mm256_loadu_pd(step_s + i);
        __m256d c1 = _mm256_sub_pd(_mm256_mul_pd(ci, sc), _mm256_mul_pd(si, ss));
        __m256d s1 = _mm256_add_pd(_mm256_mul_pd(si, sc), _mm256_mul_pd(ci, ss));
        _mm256_storeu_pd(c + i, c1);
        _mm256_storeu_pd(s + i, s1);
        _mm_storeu_ps(cr + i, _mm256_cvtpd_ps(_mm256_mul_pd(c1, vm)));
        _mm_storeu_ps(sr + i, _mm256_cvtpd_ps(_mm256_mul_pd(s1, vm)));
    }
    for (; i < np; i++) {
        const double c1 = c[i] * step_c[i] - s[i] * step_s[i];
        const double s1 = s[i] * step_c[i] + c[i] * step_s[i];
        c[i] = c1;
        s[i] = s1;
        cr[i] = (float)(c1 * m);
        sr[i] = (float)(s1 * m);
    }
}

void rope_cos_sin_range(const struct rope_table *t, int64_t pos0, int n,
                        float *cs, float *sn)
{
    KVT_ASSERT(t != NULL);
    KVT_ASSERT(n >= 0);
    KVT_ASSERT(pos0 >= 0);
    KVT_ASSERT(n == 0 || (cs != NULL && sn != NULL));
    const int np = t->n_rot / 2;
    int j = 0;
    for (; j < n && pos0 + j < t->n_hat; j++) /* LongRoPE's unscaled head */
        cos_sin_row(t, pos0 + j, cs + (size_t)j * np, sn + (size_t)j * np);
    if (j == n) return;

    double step_c[ROPE_MAX_PAIRS], step_s[ROPE_MAX_PAIRS];
    double c[ROPE_MAX_PAIRS], s[ROPE_MAX_PAIRS];
    for (int i = 0; i < np; i++) sincos(t->freq[i], &step_s[i], &step_c[i]);
    const double m = (double)t->mscale;
    const int avx2 = cpu_set_default() >= CPU_SET_AVX2;
    for (int k = 0; j < n; j++, k++) {
        float *cr = cs + (size_t)j * np, *sr = sn + (size_t)j * np;
        if (k % ROPE_EXACT_EVERY == 0) {
            const double p = (double)(pos0 + j);
            for (int i = 0; i < np; i++) sincos(p * t->freq[i], &s[i], &c[i]);
            range_out(np, c, s, m, cr, sr);
        } else if (avx2) {
            range_step_avx2(np, c, s, step_c, step_s, m, cr, sr);
        } else {
            for (int i = 0; i < np; i++) {
                const double c1 = c[i] * step_c[i] - s[i] * step_s[i];
                const double s1 = s[i] * step_c[i] + c[i] * step_s[i];
                c[i] = c1;
                s[i] = s1;
            }
            range_out(np, c, s, m, cr, sr);
        }
    }
}

void rope_rotate(const struct rope_table *t, float *x, int n_heads,
                 int head_dim, const float *cs, const float *sn)
{
    KVT_ASSERT(t != NULL);
    KVT_ASSERT(n_heads >= 0);
    KVT_ASSERT(head_dim >= t->n_rot);
    KVT_ASSERT(n_heads == 0 || (x != NULL && cs != NULL && sn != NULL));
    const int np = t->n_rot / 2;
    /* pair i is (x[i*a], x[i*a + b]): adjacent a=2,b=1; neox a=1,b=np */
    const int a = t->neox ? 1 : 2;
    const int b = t->neox ? np : 1;
    for (int h = 0; h < n_heads; h++) {
        float *v = x + (size_t)h * (size_t)head_dim;
        for (int i = 0; i < np; i++) {
            const float x0 = v[i * a], x1 = v[i * a + b];
            v[i * a] = x0 * cs[i] - x1 * sn[i];
            v[i * a + b] = x0 * sn[i] + x1 * cs[i];
        }
    }
}

/* One head: dst = src rotated (pairs of rope_rotate), dims < n_rot. */
static void rotate_head_c(int neox, int np, const float *x, float *v,
                          const float *cs, const float *sn)
{
    const int a = neox ? 1 : 2;
    const int b = neox ? np : 1;
    for (int i = 0; i < np; i++) {
        const float x0 = x[i * a], x1 = x[i * a + b];
        v[i * a] = x0 * cs[i] - x1 * sn[i];
        v[i * a + b] = x0 * sn[i] + x1 * cs[i];
    }
}

/* The same with AVX2 lanes: separate multiplies and adds (no FMA), so
 * every float is rotate_head_c's (addsub's odd lanes add x1*c + x0*s, the
 * same sum). */
__attribute__((target("avx2"))) static void rotate_head_avx2(int neox, int np,
                                                             const float *x, float *v,
                                                             const float *cs,
                                                             const float *sn)
{
    int i = 0;
    if (neox) {
        for (; i + 8 <= np; i += 8) {
            __m256 x0 = _mm256_loadu_ps(x + i), x1 = _mm256_loadu_ps(x + np + i);
            __m256 c = _mm256_loadu_ps(cs + i), s = _mm256_loadu_ps(sn + i);
            _mm256_storeu_ps(v + i, _mm256_sub_ps(_mm256_mul_ps(x0, c), _mm256_mul_ps(x1, s)));
            _mm256_storeu_ps(v + np + i, _mm256_add_ps(_mm256_mul_ps(x0, s), _mm256_mul_ps(x1, c)));
        }
        for (; i < np; i++) {
            const float x0 = x[i], x1 = x[i + np];
            v[i] = x0 * cs[i] - x1 * sn[i];
            v[i + np] = x0 * sn[i] + x1 * cs[i];
        }
        return;
    }
    const __m256i dup = _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3);
    for (; i + 4 <= np; i += 4) {
        __m256 xv = _mm256_loadu_ps(x + 2 * i);
        __m256 c = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_loadu_ps(cs + i)), dup);
        __m256 s = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_loadu_ps(sn + i)), dup);
        __m256 xs = _mm256_permute_ps(xv, 0xB1); /* pairs swapped */
        _mm256_storeu_ps(v + 2 * i, _mm256_addsub_ps(_mm256_mul_ps(xv, c), _mm256_mul_ps(xs, s)));
    }
    for (; i < np; i++) {
        const float x0 = x[2 * i], x1 = x[2 * i + 1];
        v[2 * i] = x0 * cs[i] - x1 * sn[i];
        v[2 * i + 1] = x0 * sn[i] + x1 * cs[i];
    }
}

void rope_rotate_rows(const struct rope_table *t, const float *src, float *dst,
                      int n, size_t ld, int n_heads, int head_dim,
                      const float *cs, const float *sn)
{
    KVT_ASSERT(t != NULL);
    KVT_ASSERT(n >= 0 && n_heads >= 0);
    KVT_ASSERT(head_dim >= t->n_rot);
    KVT_ASSERT(ld >= (size_t)n_heads * (size_t)head_dim);
    const int np = t->n_rot / 2, nr = t->n_rot;
    const int avx2 = cpu_set_default() >= CPU_SET_AVX2;
    for (int r = 0; r < n; r++) {
        const float *x = src + (size_t)r * ld;
        float *v = dst + (size_t)r * ld;
        const float *c = cs + (size_t)r * np, *s = sn + (size_t)r * np;
        for (int h = 0; h < n_heads; h++) {
            const float *xh = x + (size_t)h * head_dim;
            float *vh = v + (size_t)h * head_dim;
            if (avx2) rotate_head_avx2(t->neox, np, xh, vh, c, s);
            else rotate_head_c(t->neox, np, xh, vh, c, s);
            if (head_dim > nr)
                memcpy(vh + nr, xh + nr, (size_t)(head_dim - nr) * sizeof *vh);
        }
    }
}

/* ---- cos/sin cache -------------------------------------------------------- */

struct rope_cache {
    int span, np_max;
    size_t run_floats;      /* span * np_max: one run's room */
    int np;                 /* pairs of the rows held (the table's) */
    int64_t cap_runs;       /* runs the cap allows */
    int64_t runs;           /* runs allocated */
    float *cs, *sn;         /* (runs, span, np) each */
    uint8_t *ok;            /* (runs) 1: run filled for table t */
    int have_t;
    struct rope_table t;    /* the table the rows were made with */
};

int rope_cache_create(int span, int n_rot_max, size_t cap_bytes, rope_cache **out)
{
    *out = NULL;
    if (span <= 0 || n_rot_max <= 0 || n_rot_max / 2 > ROPE_MAX_PAIRS) return KVT_ERANGE;
    rope_cache *c = calloc(1, sizeof *c);
    if (!c) return -ENOMEM;
    c->span = span;
    c->np_max = n_rot_max / 2;
    c->run_floats = (size_t)span * (size_t)c->np_max;
    size_t run_bytes = 2 * c->run_floats * sizeof(float) + 1;
    c->cap_runs = (int64_t)(cap_bytes / run_bytes);
    *out = c;
    return 0;
}

void rope_cache_free(rope_cache *c)
{
    if (!c) return;
    free(c->cs);
    free(c->sn);
    free(c->ok);
    free(c);
}

int rope_cache_reserve(rope_cache *c, int64_t n_pos)
{
    KVT_ASSERT(n_pos >= 0);
    int64_t want = KVT_MIN(c->cap_runs, (n_pos + c->span - 1) / c->span);
    if (want <= c->runs) return 0;
    size_t rows = (size_t)want * c->run_floats * sizeof(float);
    float *cs = realloc(c->cs, rows);
    if (!cs) return -ENOMEM;
    c->cs = cs;
    float *sn = realloc(c->sn, rows);
    if (!sn) return -ENOMEM;
    c->sn = sn;
    uint8_t *ok = realloc(c->ok, (size_t)want);
    if (!ok) return -ENOMEM;
    memset(ok + c->runs, 0, (size_t)(want - c->runs));
    c->ok = ok;
    c->runs = want;
    return 0;
}

size_t rope_cache_bytes(const rope_cache *c)
{
    return (size_t)c->runs * (2 * c->run_floats * sizeof(float) + 1);
}

static int table_same(const struct rope_table *a, const struct rope_table *b)
{
    if (a->n_rot != b->n_rot || a->neox != b->neox || a->n_hat != b->n_hat ||
        a->mscale != b->mscale || a->long_factors != b->long_factors)
        return 0;
    for (int i = 0; i < a->n_rot / 2; i++)
        if (a->freq[i] != b->freq[i] || a->freq_orig[i] != b->freq_orig[i]) return 0;
    return 1;
}

void rope_cache_range(rope_cache *c, const struct rope_table *t, int64_t pos0,
                      int n, float *cs_buf, float *sn_buf, const float **cs,
                      const float **sn)
{
    KVT_ASSERT(t->n_rot / 2 <= c->np_max);
    KVT_ASSERT(pos0 >= 0 && n >= 0);
    int64_t run = pos0 / c->span;
    if (pos0 % c->span != 0 || n > c->span || run >= c->runs) {
        rope_cos_sin_range(t, pos0, n, cs_buf, sn_buf);
        *cs = cs_buf;
        *sn = sn_buf;
        return;
    }
    if (!c->have_t || !table_same(&c->t, t)) {
        memset(c->ok, 0, (size_t)c->runs);
        c->t = *t;
        c->have_t = 1;
        c->np = t->n_rot / 2;
    }
    size_t off = (size_t)run * c->run_floats; /* rows (span, np) packed */
    if (!c->ok[run]) {
        rope_cos_sin_range(t, pos0, c->span, c->cs + off, c->sn + off);
        c->ok[run] = 1;
    }
    *cs = c->cs + off;
    *sn = c->sn + off;
}

const char *rope_scheme_name(int scheme)
{
    if (scheme < 0 || scheme >= ROPE_NSCHEMES) return "unknown";
    return rope_names[scheme];
}

int rope_scheme_parse(const char *name)
{
    KVT_ASSERT(name != NULL);
    for (int i = 0; i < ROPE_NSCHEMES; i++)
        if (strcmp(name, rope_names[i]) == 0) return i;
    /* spellings used by HF configs and GGUF metadata */
    static const struct { const char *name; int scheme; } alias[] = {
        { "default", ROPE_NONE },    { "dynamic", ROPE_DYN_NTK },
        { "dyn-ntk", ROPE_DYN_NTK }, { "su", ROPE_LONGROPE },
        { "pi", ROPE_LINEAR },
    };
    for (size_t i = 0; i < sizeof alias / sizeof alias[0]; i++)
        if (strcmp(name, alias[i].name) == 0) return alias[i].scheme;
    return -1;
}

/* ---- LongRoPE factor files ---------------------------------------------- */

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' ||
           c == '\f';
}

static int is_delim(char c)
{
    return is_space(c) || c == ',' || c == '[' || c == ']' || c == '#';
}

/* Parse tok[0..n) as one factor. @return 0, KVT_EFORMAT or KVT_ERANGE. */
static int parse_factor(const char *tok, size_t n, float *out)
{
    char buf[64];
    if (n >= sizeof buf) return KVT_EFORMAT;
    memcpy(buf, tok, n);
    buf[n] = '\0';
    char *end = NULL;
    double v = strtod(buf, &end);
    if (end == buf || end != buf + n) return KVT_EFORMAT;
    float f = (float)v;
    if (!finite_pos(v) || !finite_pos((double)f)) return KVT_ERANGE;
    *out = f;
    return 0;
}

int rope_factors_parse(const char *text, size_t len, float *out, int max,
                       int *n_out)
{
    KVT_ASSERT(text != NULL || len == 0);
    KVT_ASSERT(max >= 0);
    KVT_ASSERT(out != NULL || max == 0);
    KVT_ASSERT(n_out != NULL);
    *n_out = 0;
    int n = 0;
    int list = 0; /* 0: no '[' yet, 1: inside [...], 2: after ']' */
    size_t i = 0;
    while (i < len) {
        const char c = text[i];
        if (c == '#') {
            while (i < len && text[i] != '\n') i++;
            continue;
        }
        if (is_space(c) || c == ',') { i++; continue; }
        if (c == '[') {
            if (list != 0 || n > 0) return KVT_EFORMAT;
            list = 1;
            i++;
            continue;
        }
        if (c == ']') {
            if (list != 1) return KVT_EFORMAT;
            list = 2;
            i++;
            continue;
        }
        if (list == 2) return KVT_EFORMAT; /* text after the list */
        size_t j = i;
        while (j < len && !is_delim(text[j])) j++;
        float v;
        int rc = parse_factor(text + i, j - i, &v);
        if (rc < 0) return rc;
        if (n >= max) return KVT_ERANGE;
        out[n++] = v;
        i = j;
    }
    if (list == 1 || n == 0) return KVT_EFORMAT;
    *n_out = n;
    return 0;
}

int rope_params_override(struct rope_params *rp, const struct rope_override *ov)
{
    if (ov->scheme >= 0) {
        rp->scheme = ov->scheme;
        if (rp->scheme == ROPE_LONGROPE && !rp->have_factors && !ov->factors_long)
            return KVT_ERANGE;
    }
    if (ov->scale > 0) rp->scale = ov->scale;
    if (ov->freq_base > 0) rp->freq_base = ov->freq_base;
    if (ov->beta_fast >= 0) rp->beta_fast = ov->beta_fast;
    if (ov->beta_slow >= 0) rp->beta_slow = ov->beta_slow;
    if (ov->factors_long) {
        int half = rp->n_rot / 2;
        if (ov->n_factors != half) return KVT_ERANGE;
        memcpy(rp->factors_long, ov->factors_long, (size_t)half * sizeof *rp->factors_long);
        if (!rp->have_factors)
            for (int i = 0; i < half; i++) rp->factors_short[i] = 1.0f;
        rp->have_factors = 1;
        if (ov->scheme < 0) rp->scheme = ROPE_LONGROPE;
        if (rp->scale <= 1.0 && ov->n_ctx > rp->orig_ctx)
            rp->scale = (double)ov->n_ctx / (double)rp->orig_ctx;
    }
    return 0;
}
