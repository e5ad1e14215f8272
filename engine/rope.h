/* rope.h - positions: rotary encodings and their long-context scalings.
 *
 * Data flow: the model gives a scheme (from GGUF metadata or the command
 * line); for an evaluation whose true sequence length is SEQ_LEN,
 * rope_prepare() fixes the per-pair angular frequencies and the magnitude
 * factor; rope_cos_sin() gives cos/sin (magnitude included) for a run of
 * positions (one table per tile, shared by all heads); rope_rotate()
 * applies it to Q or to pre-rotation K rows.
 *
 * Pairs: n_rot dims form n_rot/2 pairs. Pair i has base frequency
 * theta_i = freq_base^(-2i/n_rot). Layouts: adjacent (x[2i], x[2i+1]),
 * llama) or NeoX half split (x[i], x[i + n_rot/2]: phi3, qwen2).
 *
 * Schemes (s = scale factor, L = original context length, d = n_rot):
 *   ROPE_NONE      theta_i
 *   ROPE_LINEAR    theta_i / s                           (PI)
 *   ROPE_NTK       base' = base * s^(d/(d-2))
 *   ROPE_DYN_NTK   NTK with s' = max(1, (a*n/L) - (a-1)), n = SEQ_LEN,
 *                  a = s (the dynamic-NTK formula of HF transformers)
 *   ROPE_YARN      llama.cpp's rope_yarn: ramp between correction dims of
 *                  beta_fast / beta_slow, ext_factor, magnitude
 *                  attn_factor * (1 + 0.1 ln s)
 *   ROPE_LONGROPE  theta_i / lambda_i with lambda = long factors when
 *                  SEQ_LEN > L, else short factors; magnitude attn_factor
 *                  (default sqrt(1 + ln s / ln L)) x mscale_mult (if > 0,
 *                  a searched multiplier); positions < n_hat use
 *                  theta_i unscaled (rope_freqs still apply, so does the
 *                  magnitude)
 * Frequencies are computed in double; cos/sin returned as float.
 */
#ifndef KVT_ROPE_H
#define KVT_ROPE_H

#include <stddef.h>
#include <stdint.h>

#define ROPE_MAX_PAIRS 256

enum rope_scheme {
    ROPE_NONE, ROPE_LINEAR, ROPE_NTK, ROPE_DYN_NTK, ROPE_YARN, ROPE_LONGROPE,
    ROPE_NSCHEMES
};

struct rope_params {
    int scheme;            /* enum rope_scheme */
    int n_rot;             /* rotated dims (even, <= 2*ROPE_MAX_PAIRS) */
    int neox;              /* 1: half-split pairs, 0: adjacent pairs */
    double freq_base;      /* 10000 for llama 2 */
    double scale;          /* s >= 1 */
    int64_t orig_ctx;      /* L: the trained context */
    double attn_factor;    /* magnitude; 0 = the scheme's default */
    double beta_fast, beta_slow, ext_factor; /* YaRN: 32, 1, 1 */
    int64_t n_hat;         /* LongRoPE: first n_hat positions unscaled */
    double mscale_mult;    /* LongRoPE: multiplies its magnitude; 0 = 1 */
    int have_factors;      /* 1: the arrays below are set (n_rot/2 each) */
    float factors_short[ROPE_MAX_PAIRS];
    float factors_long[ROPE_MAX_PAIRS];
    int have_freq_factors; /* llama rope_freqs.weight: theta_i / f_i always */
    float freq_factors[ROPE_MAX_PAIRS];
};

/* Fixed for one evaluation of true length seq_len. */
struct rope_table {
    int n_rot, neox;
    double freq[ROPE_MAX_PAIRS];      /* radians per position, pair i */
    double freq_orig[ROPE_MAX_PAIRS]; /* unscaled, for pos < n_hat */
    int64_t n_hat;
    float mscale;                     /* multiplies cos and sin */
    int long_factors;                 /* LongRoPE: 1 if long set chosen */
};

/* Defaults for a scheme (beta_fast 32, beta_slow 1, ext_factor 1, ...). */
void rope_params_default(struct rope_params *rp, int n_rot, double freq_base);

/* @return 0, or KVT_ERANGE for inconsistent parameters. */
int rope_prepare(const struct rope_params *rp, int64_t seq_len,
                 struct rope_table *t);

/* cos/sin for positions pos[0..n) (each >= 0, asserted): cs and sn are
 * (n, n_rot/2). */
void rope_cos_sin(const struct rope_table *t, const int64_t *pos, int n,
                  float *cs, float *sn);
/* Same for consecutive positions pos0 .. pos0+n-1. */
void rope_cos_sin_range(const struct rope_table *t, int64_t pos0, int n,
                        float *cs, float *sn);

/* Rotate n_heads heads of head_dim floats each, for ONE position whose
 * cos/sin rows are cs, sn (n_rot/2 each). Dims >= n_rot are unchanged. */
void rope_rotate(const struct rope_table *t, float *x, int n_heads,
                 int head_dim, const float *cs, const float *sn);

/* rope_rotate of n rows, copying: row r of dst (n_heads heads of head_dim
 * floats, rows ld floats apart, as in src) is row r of src rotated with
 * cos/sin row r (cs + r * n_rot/2, sn likewise). The floats are those of
 * memcpy + rope_rotate (the same products and sums, in any kernel set:
 * AVX2 lanes where the host has it, KVT_CPU=portable forces plain C).
 * src and dst must not overlap. */
void rope_rotate_rows(const struct rope_table *t, const float *src, float *dst,
                      int n, size_t ld, int n_heads, int head_dim,
                      const float *cs, const float *sn);

/* ---- cos/sin cache ------------------------------------------------------
 * Rows of rope_cos_sin_range for runs of SPAN positions starting at
 * multiples of SPAN (the store's tiles), kept across layers and decode
 * steps: they depend on the table and the positions only. Runs
 * [0, runs) are cached, runs = min(what rope_cache_reserve asked for,
 * cap_bytes / bytes of one run); rows are computed on first use. A
 * table that differs from the one the rows were made with (any field)
 * empties the cache. The rows handed out are rope_cos_sin_range's floats
 * for (pos0, n), because that recurrence starts at pos0 and a prefix of a
 * run is the run's first rows. */
typedef struct rope_cache rope_cache;

/* For tables of up to n_rot_max rotated dims.
 * @return 0, -ENOMEM, KVT_ERANGE (span or n_rot_max out of range).
 * Allocates nothing for rows yet (rope_cache_reserve does). */
int rope_cache_create(int span, int n_rot_max, size_t cap_bytes, rope_cache **out);
void rope_cache_free(rope_cache *c); /* NULL is a no-op */
/* Room for the runs covering positions [0, n_pos), up to the cap;
 * never shrinks. @return 0 or -ENOMEM (the cache is then unchanged). */
int rope_cache_reserve(rope_cache *c, int64_t n_pos);
/* Bytes of rows and bookkeeping allocated. */
size_t rope_cache_bytes(const rope_cache *c);
/* cos/sin rows of positions pos0 .. pos0+n-1 (n >= 0): from the cache if
 * pos0 is a multiple of SPAN, n <= SPAN and its run is cached, else
 * computed into cs_buf, sn_buf ((n, n_rot/2) each). *cs, *sn point at
 * the rows (valid until the next call on C). t->n_rot <= n_rot_max. */
void rope_cache_range(rope_cache *c, const struct rope_table *t, int64_t pos0,
                      int n, float *cs_buf, float *sn_buf, const float **cs,
                      const float **sn);

const char *rope_scheme_name(int scheme);
int rope_scheme_parse(const char *name); /* -1 if unknown */

/* YaRN correction dims as llama.cpp's ggml_rope_yarn_corr_dims computes
 * them (float math, so the same integers): dims[0] = max(0, floor(c(fast))),
 * dims[1] = min(n_rot-1, ceil(c(slow))), c(b) = n_rot ln(L/(2 pi b)) /
 * (2 ln base). Pair i is fully extrapolated at i <= dims[0] and fully
 * interpolated at i >= dims[1]. */
void rope_yarn_corr_dims(int n_rot, int64_t orig_ctx, double freq_base,
                         double beta_fast, double beta_slow, double dims[2]);

/* Parse a LongRoPE factor file held in text[0..len) (need not be
 * NUL-terminated) into out[0..max). Accepted: numbers separated by
 * whitespace, newlines or commas, optionally inside ONE "[...]" list (the
 * microsoft/LongRoPE / Python list format); '#' starts a comment to the end
 * of the line. *n_out = number of factors.
 * @return 0; KVT_EFORMAT for junk, an unclosed or repeated list, or no
 * factors at all; KVT_ERANGE for a factor that is not finite and > 0, or
 * more than max factors. */
int rope_factors_parse(const char *text, size_t len, float *out, int max,
                       int *n_out);

/* Changes a run makes to a file's positions (the CLI's --rope-* options,
 * the library's context parameters). */
struct rope_override {
    int scheme;                /* enum rope_scheme, < 0: the file's */
    double scale, freq_base;   /* <= 0: the file's */
    double beta_fast, beta_slow; /* < 0: the file's */
    const float *factors_long; /* LongRoPE long factors (n_rot/2), NULL: the
                                  file's; given without a scheme they select
                                  LongRoPE (short factors 1 if the file has
                                  none) */
    int n_factors;
    int64_t n_ctx;             /* the run's context (0: none): with factors
                                  and no scale > 1, scale = n_ctx / orig_ctx */
};

/* Apply OV to RP (the file's parameters).
 * @return 0, or KVT_ERANGE: LongRoPE asked for without factors, or
 * n_factors is not n_rot/2 (RP is then partly changed). */
int rope_params_override(struct rope_params *rp, const struct rope_override *ov);

#endif
