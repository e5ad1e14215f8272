/* attn.c - streamed causal attention with an online softmax (see attn.h). */
#include "attn.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/kvt.h"
#include "base/cpu.h"
#include "attn_kern.h"

enum { ATTN_QB = 64 }; /* query tokens per block */

/* The portable set's softmax kernels (plain C, expf); the vector sets'
 * are in attn_kern.c. */
static float row_max_c(const float *row, int n)
{
    float mx = -INFINITY;
    for (int c = 0; c < n; c++) mx = row[c] > mx ? row[c] : mx;
    return mx;
}

static float exp_sum_c(float *row, int n, float m)
{
    float sum = 0.0f;
    for (int c = 0; c < n; c++) {
        float p = expf(row[c] - m);
        row[c] = p;
        sum += p;
    }
    return sum;
}

static void scale_c(float *x, int n, float s)
{
    for (int i = 0; i < n; i++) x[i] *= s;
}

/* no transposed path: every chunk takes the sgemm path */
static const struct attn_kern attn_kern_portable = { row_max_c, exp_sum_c, scale_c, NULL, NULL, NULL };

/* Prompt chunks of at least this many queries take the transposed path
 * (attn_kern.h) on the vector sets; fewer (decode steps) the sgemm path,
 * whose rows are not padded to ATTN_CB. */
enum { ATTN_T_MIN_Q = 16 };

struct attn_ctx {
    struct attn_params p;
    pool *pool;
    int grp, hd, kv_dim, half, n_kv, n_threads;
    const struct attn_kern *kern; /* the softmax kernels of p.cpu_set's set */
    size_t rows_max;     /* max_q * grp rounded up to ATTN_CB: rows of one KV head's Q */
    /* per call, the sgemm path: qg (n_kv, rows_max, hd) rotated Q (qg_se
     * grouped), acc (n_kv, rows_max, hd); the transposed path (prompt
     * chunks on the vector sets): the same buffers hold Q^T (times
     * 1/sqrt(hd)) and acc^T, (n_kv, hd rows, blocked over rows_max
     * columns) */
    float *qg, *qg_se;
    float *acc;
    float *m, *l;        /* (n_kv, rows_max) running max and sum */
    float *krot, *krot_se; /* (2, tile_tokens, kv_dim) rotated K of the span
                              in work and of the next one (the past's) */
    float *cs, *sn;      /* (max(tile, max_q), half) cos/sin table */
    rope_cache *rc;      /* cos/sin rows of the stream's tiles */
    int64_t *posbuf;     /* (max(tile, max_q)) */
    float *S, *S2;       /* per thread (ATTN_QB*grp, tile_tokens) logits (or S^T) */
    size_t s_cap;
    /* decode-step selection (p.sel.on); sized by attn_reserve for the
     * sequence the positions were prepared for (a decode step past it
     * grows them, by doubling) */
    int64_t sel_cap;     /* full tiles the arrays below hold */
    float *sel_bound;    /* (n_kv, sel_cap) */
    uint8_t *sel_chosen; /* (sel_cap) */
    int64_t *sel_list;   /* (sel_cap) tiles to read */
    int64_t *sel_rank;   /* (n_kv, sel_cap) the heads' rankings */
    float *sel_w;        /* (n_head, head_dim/2) bound weights */
    float *sel_sum;      /* (kv_dim/2) one tile's summary */
    struct attn_stats st;
};

void attn_ctx_free(attn_ctx *a)
{
    if (!a) return;
    free(a->qg); free(a->qg_se); free(a->acc); free(a->m); free(a->l);
    free(a->krot); free(a->krot_se); free(a->cs); free(a->sn);
    free(a->posbuf); free(a->S); free(a->S2);
    free(a->sel_bound); free(a->sel_chosen); free(a->sel_list);
    free(a->sel_rank); free(a->sel_w); free(a->sel_sum);
    rope_cache_free(a->rc);
    free(a);
}

static float *falloc(size_t n)
{
    return malloc((n ? n : 1) * sizeof(float));
}

int attn_ctx_create(const struct attn_params *ap, pool *p, attn_ctx **out)
{
    KVT_ASSERT(ap->n_head > 0 && ap->n_head_kv > 0);
    KVT_ASSERT(ap->n_head % ap->n_head_kv == 0);
    KVT_ASSERT(ap->max_q > 0 && ap->tile_tokens > 0);
    KVT_ASSERT(!(ap->k_rotated && ap->se_group > 1));
    attn_ctx *a = calloc(1, sizeof *a);
    if (!a) return -ENOMEM;
    /* our pool does the threading; an OpenBLAS thread team inside each
     * pool task would oversubscribe the cores (process-wide setting) */
    openblas_set_num_threads(1);
    a->p = *ap;
    a->pool = p;
    const int set = cpu_set_resolve(ap->cpu_set);
    if (set < 0) {
        free(a);
        return set;
    }
    a->kern = set == CPU_SET_AVX512 ? &attn_kern_avx512
              : set == CPU_SET_AVX2 ? &attn_kern_avx2 : &attn_kern_portable;
    a->n_kv = ap->n_head_kv;
    a->grp = ap->n_head / ap->n_head_kv;
    a->hd = ap->head_dim;
    a->half = ap->head_dim / 2;
    a->kv_dim = ap->n_head_kv * ap->head_dim;
    a->n_threads = pool_threads(p);
    a->rows_max = ((size_t)ap->max_q * (size_t)a->grp + ATTN_CB - 1) / ATTN_CB * ATTN_CB;
    _Static_assert(ATTN_QB % ATTN_CB == 0, "query blocks: whole column blocks");
    size_t qn = (size_t)a->n_kv * a->rows_max * (size_t)a->hd;
    size_t tmax = (size_t)KVT_MAX(ap->tile_tokens, ap->max_q);
    int se = ap->se_group > 1;
    a->s_cap = (size_t)ATTN_QB * (size_t)a->grp * (size_t)ap->tile_tokens;
    a->qg = falloc(qn);
    a->qg_se = se ? falloc(qn) : NULL;
    a->acc = falloc(qn);
    a->m = falloc((size_t)a->n_kv * a->rows_max);
    a->l = falloc((size_t)a->n_kv * a->rows_max);
    a->krot = falloc(2 * (size_t)ap->tile_tokens * (size_t)a->kv_dim);
    a->krot_se = se ? falloc(2 * (size_t)ap->tile_tokens * (size_t)a->kv_dim) : NULL;
    a->cs = falloc(tmax * (size_t)a->half);
    a->sn = falloc(tmax * (size_t)a->half);
    a->posbuf = malloc(tmax * sizeof *a->posbuf);
    a->S = falloc(a->s_cap * (size_t)a->n_threads);
    a->S2 = se ? falloc(a->s_cap * (size_t)a->n_threads) : NULL;
    a->sel_w = falloc((size_t)ap->n_head * (size_t)a->half);
    a->sel_sum = falloc((size_t)a->kv_dim / 2);
    int rc = rope_cache_create(ap->tile_tokens, ap->head_dim & ~1,
                               ap->rope_cache_bytes ? ap->rope_cache_bytes : ATTN_ROPE_CACHE_DEFAULT,
                               &a->rc);
    if (rc < 0) {
        attn_ctx_free(a);
        return rc;
    }
    if (!a->sel_w || !a->sel_sum || !a->qg || !a->acc || !a->m || !a->l || !a->krot || !a->cs || !a->sn ||
        !a->posbuf || !a->S || (se && (!a->qg_se || !a->krot_se || !a->S2))) {
        attn_ctx_free(a);
        return -ENOMEM;
    }
    *out = a;
    return 0;
}

/* SelfExtend positions (the paper's grouped attention). */
static int64_t se_key_pos(const attn_ctx *a, int64_t kpos)
{
    return kpos / a->p.se_group;
}
static int64_t se_query_pos(const attn_ctx *a, int64_t qpos)
{
    int64_t g = a->p.se_group, w = a->p.se_window;
    return qpos / g + w - w / g;
}

/* 1 if SelfExtend is on and a query at q_last is at least W from the key
 * at k_first: only then does a span need its grouped rotation (span_block
 * asks the same of each query block, whose last query is <= q_last). */
static int se_far(const attn_ctx *a, int64_t q_last, int64_t k_first)
{
    return a->p.se_group > 1 && q_last - k_first >= a->p.se_window;
}

/* Rotate n rows of K (n, kv_dim) starting at position pos0 into dst,
 * and into dst_se with grouped positions when SelfExtend is on. */
static void rotate_k(attn_ctx *a, const struct rope_table *rt, const float *k,
                     int n, int64_t pos0, float *dst, float *dst_se)
{
    size_t row = (size_t)a->kv_dim;
    const float *cs, *sn;
    rope_cache_range(a->rc, rt, pos0, n, a->cs, a->sn, &cs, &sn);
    rope_rotate_rows(rt, k, dst, n, row, a->n_kv, a->hd, cs, sn);
    if (!dst_se) return;
    memcpy(dst_se, k, (size_t)n * row * sizeof *dst_se);
    for (int i = 0; i < n; i++) a->posbuf[i] = se_key_pos(a, pos0 + i);
    rope_cos_sin(rt, a->posbuf, n, a->cs, a->sn);
    for (int i = 0; i < n; i++)
        rope_rotate(rt, dst_se + (size_t)i * row, a->n_kv, a->hd,
                    a->cs + (size_t)i * a->half, a->sn + (size_t)i * a->half);
}

/* Index of row d, column r of KV head g in the transposed layout
 * (attn_kern.h: (hd rows, blocked over rows_max columns) per head). */
static size_t q_t_index(const attn_ctx *a, int g, size_t r, int d)
{
    return (size_t)g * a->rows_max * (size_t)a->hd + (r / ATTN_CB) * (size_t)a->hd * ATTN_CB +
           (size_t)d * ATTN_CB + r % ATTN_CB;
}

/* Rotate Q (n, n_head*hd) for positions pos0.. and scatter it into the
 * per-KV-head layout qg[g][(t*grp + j)*hd]. */
static void place_q(attn_ctx *a, const struct rope_table *rt, float *q, int n,
                    int64_t pos0, float *qg, int grouped, int transposed)
{
    int nh = a->p.n_head, hd = a->hd;
    const float scale = 1.0f / sqrtf((float)hd);
    if (grouped) {
        for (int t = 0; t < n; t++) a->posbuf[t] = se_query_pos(a, pos0 + t);
        rope_cos_sin(rt, a->posbuf, n, a->cs, a->sn);
    } else {
        rope_cos_sin_range(rt, pos0, n, a->cs, a->sn);
    }
    for (int t = 0; t < n; t++) {
        float *row = q + (size_t)t * (size_t)nh * (size_t)hd;
        rope_rotate(rt, row, nh, hd, a->cs + (size_t)t * a->half,
                    a->sn + (size_t)t * a->half);
        for (int h = 0; h < nh; h++) {
            int g = h / a->grp, j = h % a->grp;
            size_t r = (size_t)t * a->grp + (size_t)j;
            if (transposed) { /* with the logits' scale (the kernel has none) */
                float *dst = qg + q_t_index(a, g, r, 0);
                for (int d = 0; d < hd; d++) dst[(size_t)d * ATTN_CB] = row[(size_t)h * hd + d] * scale;
                continue;
            }
            float *dst = qg + ((size_t)g * a->rows_max + r) * (size_t)hd;
            memcpy(dst, row + (size_t)h * hd, (size_t)hd * sizeof *dst);
        }
    }
    if (!transposed) return;
    /* the last column block's padding columns: zero queries */
    size_t rows = (size_t)n * a->grp, pad = (rows + ATTN_CB - 1) / ATTN_CB * ATTN_CB;
    for (int g = 0; g < a->n_kv; g++)
        for (size_t r = rows; r < pad; r++)
            for (int d = 0; d < hd; d++) qg[q_t_index(a, g, r, d)] = 0.0f;
}

/* One span of keys (already rotated) against all query blocks. */
struct span_job {
    attn_ctx *a;
    const float *k, *k_se, *v; /* (n_s, kv_dim) */
    int64_t kpos0;
    int n_s;
    int n;                     /* queries */
    int64_t qpos0;
    float scale;
    int tpath;                 /* the transposed path */
    struct fetch *next;        /* non-NULL: task 0 reads the next span */
};

/* The past's next span, read (and its K rotated) by one pool task while
 * the other tasks work on the span before: kvs keeps two spans (kvs.h),
 * attn_ctx two rotated copies (krot[buf]). */
struct fetch {
    attn_ctx *a;
    kvs *kv;
    const struct rope_table *rt;
    int64_t q_last;            /* the chunk's last query position */
    int buf;                   /* krot half it rotates into */
    int rc;                    /* kvs_read_next's */
    struct kvs_span sp;
    const float *k, *k_se;     /* the span's keys as span_block reads them */
};

/* A task's KV head and query block, and whether any of the span's keys
 * can be visible to it. @return 0 if none is (all in the future, or all
 * out of the window): the task has nothing to do. */
struct blk {
    int g, t0, t1;
    int64_t q_first, q_last, k_first, k_last, win;
};

static int block_of(const struct span_job *j, int task, struct blk *k)
{
    const attn_ctx *a = j->a;
    k->g = task % a->n_kv;
    k->t0 = task / a->n_kv * ATTN_QB;
    k->t1 = KVT_MIN(j->n, k->t0 + ATTN_QB);
    k->q_first = j->qpos0 + k->t0;
    k->q_last = j->qpos0 + k->t1 - 1;
    k->k_first = j->kpos0;
    k->k_last = j->kpos0 + j->n_s - 1;
    k->win = a->p.window;
    if (k->k_first > k->q_last) return 0;
    if (k->win > 0 && k->q_first - k->k_last >= k->win) return 0;
    return 1;
}

static void span_block(void *ctx, int task, int thread)
{
    const struct span_job *j = ctx;
    attn_ctx *a = j->a;
    struct blk k;
    if (!block_of(j, task, &k)) return;
    int g = k.g, t0 = k.t0, t1 = k.t1;
    int64_t q_first = k.q_first, q_last = k.q_last, k_first = k.k_first, k_last = k.k_last;
    int64_t win = k.win;

    int hd = a->hd, grp = a->grp, n_s = j->n_s, ld = a->kv_dim;
    int rows = (t1 - t0) * grp;
    size_t r0 = (size_t)g * a->rows_max + (size_t)t0 * (size_t)grp;
    float *S = a->S + (size_t)thread * a->s_cap;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, n_s, hd,
                j->scale, a->qg + r0 * (size_t)hd, hd, j->k + (size_t)g * hd,
                ld, 0.0f, S, n_s);

    int64_t se_w = a->p.se_window;
    int se_mixed = 0;
    float *S2 = NULL;
    if (se_far(a, q_last, k_first)) { /* some keys are far: grouped */
        S2 = a->S2 + (size_t)thread * a->s_cap;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, n_s, hd,
                    j->scale, a->qg_se + r0 * (size_t)hd, hd,
                    j->k_se + (size_t)g * hd, ld, 0.0f, S2, n_s);
        se_mixed = 1;
    }
    int need_mask = k_last > q_first || (win > 0 && q_last - k_first >= win);

    for (int r = 0; r < rows; r++) {
        int64_t qpos = j->qpos0 + t0 + r / grp;
        float *row = S + (size_t)r * (size_t)n_s;
        if (se_mixed) {
            const float *row2 = S2 + (size_t)r * (size_t)n_s;
            for (int c = 0; c < n_s; c++)
                if (qpos - (j->kpos0 + c) >= se_w) row[c] = row2[c];
        }
        if (need_mask) {
            for (int c = 0; c < n_s; c++) {
                int64_t kpos = j->kpos0 + c;
                if (kpos > qpos || (win > 0 && qpos - kpos >= win))
                    row[c] = -INFINITY;
            }
        }
        float mx = a->kern->row_max(row, n_s);
        if (mx == -INFINITY) {
            memset(row, 0, (size_t)n_s * sizeof *row);
            continue;
        }
        float *mi = a->m + r0 + (size_t)r, *li = a->l + r0 + (size_t)r;
        float mnew = mx > *mi ? mx : *mi;
        float corr = *mi == -INFINITY ? 0.0f : expf(*mi - mnew);
        float sum = a->kern->exp_sum(row, n_s, mnew);
        *li = *li * corr + sum;
        *mi = mnew;
        if (corr != 1.0f) a->kern->scale(a->acc + (r0 + (size_t)r) * (size_t)hd, hd, corr);
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, hd, n_s, 1.0f,
                S, n_s, j->v + (size_t)g * hd, ld, 1.0f,
                a->acc + r0 * (size_t)hd, hd);
}

/* span_block on the transposed path (attn_kern.h): the columns of the
 * block are its query rows, padded to whole column blocks. */
static void span_block_t(void *ctx, int task, int thread)
{
    const struct span_job *j = ctx;
    attn_ctx *a = j->a;
    struct blk k;
    if (!block_of(j, task, &k)) return;
    int g = k.g, t0 = k.t0, t1 = k.t1;
    int64_t q_first = k.q_first, q_last = k.q_last, k_first = k.k_first, k_last = k.k_last;
    int64_t win = k.win;

    int hd = a->hd, grp = a->grp, n_s = j->n_s;
    int rows = (t1 - t0) * grp, ncb = (rows + ATTN_CB - 1) / ATTN_CB;
    size_t c0 = (size_t)t0 * (size_t)grp; /* a multiple of ATTN_CB */
    size_t off = q_t_index(a, g, c0, 0);
    float *st = a->S + (size_t)thread * a->s_cap;
    a->kern->qk_t(j->k + (size_t)g * hd, a->kv_dim, n_s, a->qg + off, hd, ncb, st);
    if (se_far(a, q_last, k_first)) { /* some keys are far: grouped logits */
        float *st2 = a->S2 + (size_t)thread * a->s_cap;
        a->kern->qk_t(j->k_se + (size_t)g * hd, a->kv_dim, n_s, a->qg_se + off, hd, ncb, st2);
        /* key c takes its grouped logit in the columns r with
         * q_first + r/grp - kpos >= W */
        for (int c = 0; c < n_s; c++) {
            int64_t far = KVT_MAX((int64_t)0, (j->kpos0 + c + a->p.se_window - q_first) * grp);
            for (int64_t r = far; r < rows; r++) {
                size_t i = (size_t)(r / ATTN_CB) * (size_t)n_s * ATTN_CB + (size_t)c * ATTN_CB +
                           (size_t)(r % ATTN_CB);
                st[i] = st2[i];
            }
        }
    }
    if (k_last > q_first || (win > 0 && q_last - k_first >= win)) {
        /* key c is masked for the columns r with q_first + r/grp < kpos
         * (the future) and, with a window, kpos + win <= q_first + r/grp */
        for (int c = 0; c < n_s; c++) {
            int64_t kpos = j->kpos0 + c;
            int64_t fut = KVT_MIN((int64_t)rows, KVT_MAX((int64_t)0, (kpos - q_first) * grp));
            int64_t old = win > 0 ? KVT_MAX((int64_t)0, (kpos + win - q_first) * grp) : rows;
            for (int64_t r = 0; r < rows; r++)
                if (r < fut || r >= old)
                    st[(size_t)(r / ATTN_CB) * (size_t)n_s * ATTN_CB + (size_t)c * ATTN_CB +
                       (size_t)(r % ATTN_CB)] = -INFINITY;
        }
    }
    a->kern->softmax_t(st, n_s, ncb, a->m + (size_t)g * a->rows_max + c0,
                       a->l + (size_t)g * a->rows_max + c0, a->acc + off, hd);
    a->kern->pv_t(j->v + (size_t)g * hd, a->kv_dim, n_s, st, hd, ncb, a->acc + off);
}

/* Read the past's next span and rotate its K into krot[f->buf]. */
static void fetch_span(struct fetch *f)
{
    attn_ctx *a = f->a;
    f->rc = kvs_read_next(f->kv, &f->sp);
    if (f->rc <= 0) return;
    KVT_ASSERT(f->sp.n <= a->p.tile_tokens);
    size_t half = (size_t)a->p.tile_tokens * (size_t)a->kv_dim * (size_t)f->buf;
    f->k_se = a->krot_se ? a->krot_se + half : NULL;
    if (a->p.k_rotated) {
        f->k = f->sp.k;
        return;
    }
    f->k = a->krot + half;
    rotate_k(a, f->rt, f->sp.k, f->sp.n, f->sp.pos0, a->krot + half,
             se_far(a, f->q_last, f->sp.pos0) ? a->krot_se + half : NULL);
}

static void span_task(void *ctx, int task, int thread)
{
    const struct span_job *j = ctx;
    if (j->next && task-- == 0) {
        fetch_span(j->next);
        return;
    }
    (j->tpath ? span_block_t : span_block)(ctx, task, thread);
}

/* The span's tasks and, with j->next, the next span's read first. */
static void run_span(attn_ctx *a, struct span_job *j)
{
    int n_blocks = (j->n + ATTN_QB - 1) / ATTN_QB;
    pool_run(a->pool, span_task, j, n_blocks * a->n_kv + (j->next != NULL));
}

/* Room for CAP full tiles in the selection arrays (never shrinks). */
static int sel_grow(attn_ctx *a, int64_t cap)
{
    if (cap <= a->sel_cap) return 0;
    size_t c = (size_t)cap, nkv = (size_t)a->n_kv;
    float *b = realloc(a->sel_bound, c * nkv * sizeof *b);
    if (b) a->sel_bound = b;
    uint8_t *ch = realloc(a->sel_chosen, c);
    if (ch) a->sel_chosen = ch;
    int64_t *l = realloc(a->sel_list, c * sizeof *l);
    if (l) a->sel_list = l;
    int64_t *rk = realloc(a->sel_rank, c * nkv * sizeof *rk);
    if (rk) a->sel_rank = rk;
    if (!b || !ch || !l || !rk) return -ENOMEM;
    a->sel_cap = cap;
    return 0;
}

int attn_reserve(attn_ctx *a, int64_t n_tokens)
{
    int rc = rope_cache_reserve(a->rc, n_tokens);
    if (rc < 0) return rc;
    int64_t need = n_tokens / a->p.tile_tokens;
    if (!a->p.sel.on || need <= a->sel_cap) return 0;
    /* the first call sizes exactly; positions prepared step by step
     * (generate --grow-positions) grow it by doubling */
    return sel_grow(a, a->sel_cap ? KVT_MAX(need, 2 * a->sel_cap) : need);
}

/* A step past the reserved length: double (the fallback). */
static int sel_reserve(attn_ctx *a, int64_t n_full)
{
    if (n_full <= a->sel_cap) return 0;
    int64_t cap = a->sel_cap ? a->sel_cap : 256;
    while (cap < n_full) cap *= 2;
    return sel_grow(a, cap);
}

/* Decode step (one query, rotated in a->qg): bound every full tile of
 * [0, pos0) per KV head, choose (select.h) and list the chosen tiles in
 * a->sel_list. @return entries of the list, or -ENOMEM. */
static int64_t select_tiles(attn_ctx *a, kvs *kv, int layer,
                            const struct rope_table *rt, int64_t pos0)
{
    const int T = a->p.tile_tokens, half = a->half, grp = a->grp;
    int64_t n_full = pos0 / T;
    int rc = sel_reserve(a, n_full);
    if (rc < 0) return rc;
    struct tile_pairing pr;
    kvs_summary_pairing(kv, &pr.head_dim, &pr.neox_rot);
    KVT_ASSERT(pr.head_dim == a->hd);
    /* the summaries must pair channels as the rotation does */
    KVT_ASSERT(a->p.k_rotated || pr.neox_rot == (rt->neox ? rt->n_rot : 0));
    for (int g = 0; g < a->n_kv; g++)
        sel_weights(a->qg + (size_t)g * a->rows_max * (size_t)a->hd, grp, &pr,
                    a->p.k_rotated ? 0 : rt->n_rot, a->p.k_rotated ? 1.0f : rt->mscale,
                    a->sel_w + (size_t)g * grp * half);
    size_t cap = (size_t)a->sel_cap;
    for (int64_t t = 0; t < n_full; t++) {
        const float *sum = kvs_summary(kv, layer, t, a->sel_sum) ? a->sel_sum : NULL;
        for (int g = 0; g < a->n_kv; g++)
            a->sel_bound[(size_t)g * cap + (size_t)t] =
                sel_bound(a->sel_w + (size_t)g * grp * half, grp, half,
                          sum ? sum + (size_t)g * half : NULL);
    }
    sel_choose(&a->p.sel, a->sel_bound, a->n_kv, cap, n_full, T, pos0,
               a->sel_chosen, a->sel_rank);
    int64_t n = 0;
    for (int64_t t = 0; t < n_full; t++)
        if (a->sel_chosen[t]) a->sel_list[n++] = t;
    return n;
}

void attn_get_stats(const attn_ctx *a, struct attn_stats *st) { *st = a->st; }

int attn_forward(attn_ctx *a, kvs *kv, int layer, const struct rope_table *rt,
                 float *q, const float *k_new, const float *v_new, int n,
                 int64_t pos0, float *out)
{
    KVT_ASSERT(n > 0 && n <= a->p.max_q);
    KVT_ASSERT(rt->n_rot <= a->hd);
    int se = a->p.se_group > 1;
    int nh = a->p.n_head, hd = a->hd;
    int tpath = a->kern->qk_t && n >= ATTN_T_MIN_Q;
    /* rows of each head (the transposed path: padded to whole blocks) */
    size_t rows = (size_t)n * (size_t)a->grp;
    if (tpath) rows = (rows + ATTN_CB - 1) / ATTN_CB * ATTN_CB;

    /* Q in per-KV-head layout; the grouped copy from the pre-rotation Q. */
    if (se) {
        /* place_q rotates q in place: keep a pre-rotation copy in out. */
        memcpy(out, q, (size_t)n * (size_t)nh * (size_t)hd * sizeof *out);
        place_q(a, rt, out, n, pos0, a->qg_se, 1, tpath);
    }
    place_q(a, rt, q, n, pos0, a->qg, 0, tpath);
    for (int g = 0; g < a->n_kv; g++) {
        size_t off = (size_t)g * a->rows_max;
        for (size_t r = 0; r < rows; r++) {
            a->m[off + r] = -INFINITY;
            a->l[off + r] = 0.0f;
        }
        memset(a->acc + off * (size_t)hd, 0, rows * (size_t)hd * sizeof(float));
    }

    struct span_job j = { .a = a, .n = n, .qpos0 = pos0,
                          .scale = 1.0f / sqrtf((float)hd), .tpath = tpath };
    /* 1. the cached past, span by span */
    if (pos0 > 0) {
        const int T = a->p.tile_tokens;
        int select = a->p.sel.on && n == 1 && pos0 >= T;
        int64_t n_sel = select ? select_tiles(a, kv, layer, rt, pos0) : 0;
        if (n_sel < 0) return (int)n_sel;
        uint64_t bytes0 = kvs_bytes_read(kv);
        int rc = select ? kvs_read_begin_tiles(kv, layer, pos0, a->sel_list, n_sel)
                        : kvs_read_begin(kv, layer, pos0);
        if (rc < 0) return rc;
        /* span i's tasks run with the read of span i + 1 */
        struct fetch f[2] = { { .a = a, .kv = kv, .rt = rt, .q_last = pos0 + n - 1, .buf = 0 },
                              { .a = a, .kv = kv, .rt = rt, .q_last = pos0 + n - 1, .buf = 1 } };
        int64_t spans = 0;
        fetch_span(&f[0]);
        for (int cur = 0; f[cur].rc > 0; cur ^= 1) {
            spans++;
            j.k = f[cur].k;
            j.k_se = f[cur].k_se;
            j.v = f[cur].sp.v;
            j.kpos0 = f[cur].sp.pos0;
            j.n_s = f[cur].sp.n;
            j.next = &f[cur ^ 1];
            run_span(a, &j);
        }
        j.next = NULL;
        kvs_read_end(kv);
        rc = KVT_MIN(f[0].rc, f[1].rc);
        if (rc < 0) return rc;
        if (n == 1) {
            a->st.steps++;
            a->st.tiles += (pos0 + T - 1) / T;
            a->st.tiles_read += spans;
            a->st.bytes_read += kvs_bytes_read(kv) - bytes0;
        }
    }
    /* 2. the chunk's own keys, causally masked */
    for (int c0 = 0; c0 < n; c0 += a->p.tile_tokens) {
        int n_s = KVT_MIN(a->p.tile_tokens, n - c0);
        const float *k = k_new + (size_t)c0 * (size_t)a->kv_dim;
        if (a->p.k_rotated) {
            j.k = k;
        } else {
            rotate_k(a, rt, k, n_s, pos0 + c0, a->krot,
                     se_far(a, pos0 + n - 1, pos0 + c0) ? a->krot_se : NULL);
            j.k = a->krot;
        }
        j.k_se = a->krot_se;
        j.v = v_new + (size_t)c0 * (size_t)a->kv_dim;
        j.kpos0 = pos0 + c0;
        j.n_s = n_s;
        run_span(a, &j);
    }
    /* 3. normalise */
    for (int t = 0; t < n; t++) {
        for (int h = 0; h < nh; h++) {
            int g = h / a->grp, jj = h % a->grp;
            size_t rh = (size_t)t * a->grp + (size_t)jj, r = (size_t)g * a->rows_max + rh;
            float inv = a->l[r] > 0.0f ? 1.0f / a->l[r] : 0.0f;
            float *o = out + ((size_t)t * (size_t)nh + (size_t)h) * (size_t)hd;
            if (tpath) {
                const float *acc = a->acc + q_t_index(a, g, rh, 0);
                for (int d = 0; d < hd; d++) o[d] = acc[(size_t)d * ATTN_CB] * inv;
                continue;
            }
            const float *acc = a->acc + r * (size_t)hd;
            for (int d = 0; d < hd; d++) o[d] = acc[d] * inv;
        }
    }
    return 0;
}
