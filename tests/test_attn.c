/* test_attn.c - attn_forward on every kernel set the host has, against a
 * naive attention in double precision (each key rotated at its position,
 * one softmax over all visible keys).
 *
 * Shapes cover both paths of attn.c: prompt chunks (>= 16 queries) on the
 * vector sets take the transposed kernels of attn_kern.c, shorter chunks
 * and the portable set the sgemm path. Partial tiles, query blocks and
 * column blocks, GQA groups of 1 to 3, head sizes that are not a multiple
 * of the kernels' blocking (40), a sliding window, SelfExtend, and causal
 * masks inside the chunk and against the cached past. Also: one and two threads give
 * the same bits.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "t.h"
#include "base/cpu.h"
#include "engine/attn.h"
#include "engine/pool.h"
#include "engine/rope.h"
#include "kvstore/kvs.h"

struct shape {
    int n_head, n_head_kv, hd, tile;
    int64_t past;  /* cached tokens before the chunk */
    int n;         /* queries in the chunk */
    int64_t window;
    int se_g, se_w; /* SelfExtend group and neighbour window, 0 = off */
};

static float rnd(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(*s >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static void rot_at(const struct rope_table *rt, float *x, int n_heads, int hd, int64_t pos)
{
    float cs[128], sn[128];
    rope_cos_sin_range(rt, pos, 1, cs, sn);
    rope_rotate(rt, x, n_heads, hd, cs, sn);
}

/* Naive causal attention of the chunk's queries q (n, n_head*hd,
 * pre-rotation) over keys k, v (past + n, kv_dim; K pre-rotation). */
static void naive(const struct shape *sh, const struct rope_table *rt, const float *q,
                  const float *k, const float *v, float *out)
{
    int hd = sh->hd, kvd = sh->n_head_kv * hd, grp = sh->n_head / sh->n_head_kv;
    float *qr = malloc((size_t)hd * sizeof *qr), *kr = malloc((size_t)kvd * sizeof *kr);
    double *sc = malloc((size_t)(sh->past + sh->n) * sizeof *sc);
    double *acc = malloc((size_t)hd * sizeof *acc);
    for (int t = 0; t < sh->n; t++) {
        int64_t qpos = sh->past + t;
        for (int h = 0; h < sh->n_head; h++) {
            int g = h / grp;
            double m = -INFINITY;
            for (int64_t j = 0; j <= qpos; j++) {
                sc[j] = -INFINITY;
                if (sh->window > 0 && qpos - j >= sh->window) continue;
                /* SelfExtend: far keys at grouped positions, the query at
                 * its grouped position for them */
                int far = sh->se_g > 1 && qpos - j >= sh->se_w;
                int64_t G = sh->se_g, W = sh->se_w;
                memcpy(qr, q + ((size_t)t * sh->n_head + h) * hd, (size_t)hd * sizeof *qr);
                rot_at(rt, qr, 1, hd, far ? qpos / G + W - W / G : qpos);
                memcpy(kr, k + (size_t)j * kvd, (size_t)kvd * sizeof *kr);
                rot_at(rt, kr, sh->n_head_kv, hd, far ? j / G : j);
                double s = 0;
                for (int d = 0; d < hd; d++) s += (double)qr[d] * kr[g * hd + d];
                sc[j] = s / sqrt((double)hd);
                m = sc[j] > m ? sc[j] : m;
            }
            double l = 0;
            memset(acc, 0, (size_t)hd * sizeof *acc);
            for (int64_t j = 0; j <= qpos; j++) {
                if (sc[j] == -INFINITY) continue;
                double p = exp(sc[j] - m);
                l += p;
                for (int d = 0; d < hd; d++) acc[d] += p * v[(size_t)j * kvd + g * hd + d];
            }
            for (int d = 0; d < hd; d++)
                out[((size_t)t * sh->n_head + h) * hd + d] = (float)(acc[d] / l);
        }
    }
    free(qr); free(kr); free(sc); free(acc);
}

/* attn_forward of the chunk with N_THREADS on kernel set SET, from a RAM
 * store holding the past. @return 0 or an error. */
static int run(const struct shape *sh, int set, int n_threads, const struct rope_table *rt,
               const float *q, const float *k, const float *v, float *out)
{
    int kvd = sh->n_head_kv * sh->hd;
    struct kvs_config c;
    memset(&c, 0, sizeof c);
    c.n_layer = 1;
    c.kv_dim = kvd;
    c.tile_tokens = sh->tile;
    c.backing = KVS_RAM;
    c.type = KVS_F32;
    c.head_dim = sh->hd;
    kvs *s = NULL;
    int rc = kvs_open(&c, &s);
    if (rc < 0) return rc;
    if (sh->past > 0) rc = kvs_append(s, 0, k, v, (int)sh->past);
    pool *pl = NULL;
    if (rc >= 0) rc = pool_create(n_threads, &pl);
    struct attn_params ap;
    memset(&ap, 0, sizeof ap);
    ap.n_head = sh->n_head;
    ap.n_head_kv = sh->n_head_kv;
    ap.head_dim = sh->hd;
    ap.max_q = sh->n + 3;
    ap.tile_tokens = sh->tile;
    ap.window = sh->window;
    ap.se_group = sh->se_g;
    ap.se_window = sh->se_w;
    ap.cpu_set = set;
    attn_ctx *a = NULL;
    if (rc >= 0) rc = attn_ctx_create(&ap, pl, &a);
    size_t qn = (size_t)sh->n * sh->n_head * sh->hd;
    float *qc = malloc(qn * sizeof *qc);
    memcpy(qc, q, qn * sizeof *qc);
    if (rc >= 0)
        rc = attn_forward(a, s, 0, rt, qc, k + (size_t)sh->past * kvd, v + (size_t)sh->past * kvd,
                          sh->n, sh->past, out);
    free(qc);
    attn_ctx_free(a);
    pool_free(pl);
    kvs_close(s);
    return rc;
}

static void check_shape(const struct shape *sh)
{
    int kvd = sh->n_head_kv * sh->hd;
    int64_t nt = sh->past + sh->n;
    size_t qn = (size_t)sh->n * sh->n_head * sh->hd;
    float *q = malloc(qn * sizeof *q), *k = malloc((size_t)nt * kvd * sizeof *k);
    float *v = malloc((size_t)nt * kvd * sizeof *v), *ref = malloc(qn * sizeof *ref);
    float *o1 = malloc(qn * sizeof *o1), *o2 = malloc(qn * sizeof *o2);
    uint64_t seed = (uint64_t)(sh->hd * 1000 + sh->n) ^ (uint64_t)sh->past << 20;
    /* logits of a few units: the softmax is neither flat nor one-hot */
    for (size_t i = 0; i < qn; i++) q[i] = 2.0f * rnd(&seed);
    for (size_t i = 0; i < (size_t)nt * kvd; i++) {
        k[i] = 2.0f * rnd(&seed) + 0.5f;
        v[i] = rnd(&seed);
    }
    struct rope_params rp;
    rope_params_default(&rp, sh->hd, 10000.0);
    struct rope_table rt;
    T_CHECK(rope_prepare(&rp, nt + 1, &rt) == 0);
    naive(sh, &rt, q, k, v, ref);
    for (int set = CPU_SET_PORTABLE; set < CPU_SET_COUNT; set++) {
        if (!cpu_set_supported(set)) continue;
        T_CHECK(run(sh, set, 1, &rt, q, k, v, o1) == 0);
        T_CHECK(run(sh, set, 2, &rt, q, k, v, o2) == 0);
        double worst = 0;
        for (size_t i = 0; i < qn; i++) {
            double e = fabs((double)o1[i] - ref[i]);
            worst = e > worst || e != e ? e : worst;
        }
        if (!(worst <= 2e-6))
            fprintf(stderr, "  set %s, n_head %d/%d, hd %d, past %lld, n %d, window %lld, "
                    "SelfExtend %d:%d: max error %g\n", cpu_set_name(set), sh->n_head,
                    sh->n_head_kv, sh->hd, (long long)sh->past, sh->n, (long long)sh->window,
                    sh->se_g, sh->se_w, worst);
        T_CHECK(worst <= 2e-6);
        T_CHECK(memcmp(o1, o2, qn * sizeof *o1) == 0);
    }
    free(q); free(k); free(v); free(ref); free(o1); free(o2);
}

/* Prompt chunks over a cached past: whole and partial query blocks (64)
 * and column blocks (32 rows), partial last tiles. */
static void test_attn_prompt(void)
{
    const struct shape s[] = {
        { 4, 2, 64, 64, 300, 100, 0, 0, 0 },   /* 200 rows: 3 query blocks, partial */
        { 4, 2, 64, 256, 0, 130, 0, 0, 0 },    /* no past: only the causal chunk */
        { 6, 2, 40, 32, 77, 70, 0, 0, 0 },     /* grp 3, hd 40: kernel remainders */
        { 2, 2, 64, 64, 129, 16, 0, 0, 0 },    /* grp 1, the smallest transposed chunk */
        { 8, 1, 16, 48, 50, 33, 0, 0, 0 },     /* grp 8, hd 16 */
    };
    for (size_t i = 0; i < sizeof s / sizeof *s; i++) check_shape(&s[i]);
}

/* A sliding window: keys older than W masked inside tiles and whole tiles
 * skipped. */
static void test_attn_window(void)
{
    const struct shape s[] = {
        { 4, 2, 64, 64, 300, 100, 90, 0, 0 },
        { 4, 2, 64, 32, 200, 64, 33, 0, 0 },
    };
    for (size_t i = 0; i < sizeof s / sizeof *s; i++) check_shape(&s[i]);
}

/* SelfExtend: logits of far keys from grouped positions, merged column
 * by column inside tiles (near and far keys in one tile) and whole far
 * tiles. */
static void test_attn_self_extend(void)
{
    const struct shape s[] = {
        { 4, 2, 64, 64, 300, 100, 0, 4, 64 },
        { 6, 2, 40, 32, 200, 40, 0, 8, 37 },
        { 4, 2, 64, 64, 150, 7, 0, 4, 50 }, /* the sgemm path */
    };
    for (size_t i = 0; i < sizeof s / sizeof *s; i++) check_shape(&s[i]);
}

/* Short chunks and decode steps (the sgemm path on every set). */
static void test_attn_short(void)
{
    const struct shape s[] = {
        { 4, 2, 64, 64, 200, 5, 0, 0, 0 },
        { 4, 2, 64, 64, 333, 1, 0, 0, 0 },
        { 6, 2, 40, 32, 100, 15, 50, 0, 0 },
    };
    for (size_t i = 0; i < sizeof s / sizeof *s; i++) check_shape(&s[i]);
}

int main(void)
{
    T_RUN(test_attn_prompt);
    T_RUN(test_attn_window);
    T_RUN(test_attn_self_extend);
    T_RUN(test_attn_short);
    return t_done();
}
