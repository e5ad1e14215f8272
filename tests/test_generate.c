/* test_generate.c - the sampler (engine/sample.h) and the generate loop
 * (engine/generate.h).
 *
 * The sampler is checked draw for draw against a reference written here
 * from the contract (softmax at a temperature, nucleus cut, xorshift64*
 * seeded as `kvtile generate` (seed * G + 1) and `kvtile batch` ((seed ^
 * i * C) * G + 1) seeded it before the sampler was shared), and against
 * the probabilities it must draw with. The loop is checked against plain
 * model_eval loops: the tokens it emits, what the store holds afterwards,
 * stop strings, callbacks, prefill chunks, and exact re-evaluation when
 * positions change (each token equals a fresh evaluation of the text so
 * far). */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/kvt.h"
#include "engine/generate.h"
#include "engine/gguf.h"
#include "engine/sample.h"
#include "t.h"
#include "teval.h"

#define MODEL T_MODEL("tiny-kjv-f32.gguf")
#define MODEL_LR T_MODEL("tiny-kjv-phi3-longrope-x8-f32.gguf")
#define GOLDEN 0x9E3779B97F4A7C15ULL
#define STREAM 0xD1B54A32D192ED03ULL

/* ---- the reference sampler ------------------------------------------------ */

static double ref_uniform(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return (double)((x * 0x2545F4914F6CDD1DULL) >> 11) / 9007199254740992.0;
}

static int ref_sample(const float *lg, int V, double temp, double top_p, uint64_t *s)
{
    int best = 0;
    for (int i = 0; i < V; i++) if (lg[i] > lg[best]) best = i;
    if (temp <= 0) return best;
    float *p = malloc((size_t)V * sizeof *p);
    int *order = malloc((size_t)V * sizeof *order);
    double total = 0;
    for (int i = 0; i < V; i++) {
        p[i] = (float)exp((lg[i] - lg[best]) / temp);
        total += p[i];
        order[i] = i;
    }
    for (int i = 1; i < V; i++) { /* insertion sort: p descending, id ascending */
        int v = order[i], j = i;
        while (j > 0 && (p[order[j - 1]] < p[v] || (p[order[j - 1]] == p[v] && order[j - 1] > v))) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = v;
    }
    double mass = 0;
    int k = 0;
    while (k < V) { mass += p[order[k]] / total; k++; if (mass >= top_p) break; }
    double r = ref_uniform(s) * mass * total, acc = 0;
    int id = order[k - 1];
    for (int i = 0; i < k; i++) {
        acc += p[order[i]];
        if (r < acc) { id = order[i]; break; }
    }
    free(p);
    free(order);
    return id;
}

static uint64_t lcg(uint64_t *s)
{
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return *s >> 33;
}

/* ---- sampler ------------------------------------------------------------ */

static void test_sampler_reference(void)
{
    enum { V = 700 };
    static float lg[V];
    const double temps[] = { 0, 0.3, 0.8, 1.0, 2.5 }, tops[] = { 1.0, 0.95, 0.5, 1e-9 };
    uint64_t g = 1;
    int mismatches = 0;
    for (int ti = 0; ti < 5; ti++)
        for (int pi = 0; pi < 4; pi++)
            for (uint64_t stream = 0; stream < 3; stream++) {
                struct sample_params sp = { temps[ti], tops[pi], 42 + (uint64_t)ti, stream };
                sampler *s;
                T_CHECK(sampler_create(V, &sp, &s) == 0);
                uint64_t st = (sp.seed ^ (stream * STREAM)) * GOLDEN + 1;
                if (stream == 0) T_CHECK(st == sp.seed * GOLDEN + 1); /* generate's seeding */
                for (int d = 0; d < 60; d++) {
                    for (int i = 0; i < V; i++) lg[i] = (float)((int)(lcg(&g) % 2000) - 1000) / 97.0f;
                    if (d % 7 == 0) lg[5] = lg[9] = 40; /* a tie at the top */
                    mismatches += sampler_next(s, lg) != ref_sample(lg, V, sp.temp, sp.top_p, &st);
                }
                sampler_free(s);
            }
    T_CHECK(mismatches == 0);
}

static void test_sampler_distribution(void)
{
    float lg[4] = { logf(0.5f), logf(0.3f), logf(0.2f), -1e30f };
    struct sample_params sp = { 1.0, 1.0, 7, 0 };
    sampler *s;
    T_CHECK(sampler_create(4, &sp, &s) == 0);
    int cnt[4] = { 0 };
    const int N = 40000;
    for (int i = 0; i < N; i++) cnt[sampler_next(s, lg)]++;
    T_NEAR((double)cnt[0] / N, 0.5, 0.012);
    T_NEAR((double)cnt[1] / N, 0.3, 0.012);
    T_NEAR((double)cnt[2] / N, 0.2, 0.012);
    T_CHECK(cnt[3] == 0);
    /* nucleus 0.6: {0, 1} (mass 0.8), drawn 5 : 3 */
    sp.top_p = 0.6;
    T_CHECK(sampler_set(s, &sp) == 0);
    memset(cnt, 0, sizeof cnt);
    for (int i = 0; i < N; i++) cnt[sampler_next(s, lg)]++;
    T_CHECK(cnt[2] == 0 && cnt[3] == 0);
    T_NEAR((double)cnt[0] / N, 0.625, 0.012);
    /* greedy: the lowest id of a tie */
    float tie[5] = { 1, 3, 2, 3, 0 };
    sp.temp = 0;
    T_CHECK(sampler_set(s, &sp) == 0);
    T_CHECK(sampler_next(s, tie) == 1 && sample_greedy(tie, 5) == 1);
    /* a low temperature is nearly greedy */
    sp.temp = 0.01;
    sp.top_p = 1;
    T_CHECK(sampler_set(s, &sp) == 0);
    int greedy = 0;
    for (int i = 0; i < 1000; i++) greedy += sampler_next(s, lg) == 0;
    T_CHECK(greedy == 1000);
    /* bad parameters change nothing */
    struct sample_params bad[] = { { -1, 1, 0, 0 }, { NAN, 1, 0, 0 }, { 1, 0, 0, 0 }, { 1, 1.5, 0, 0 } };
    for (int i = 0; i < 4; i++) T_CHECK(sampler_set(s, &bad[i]) == -EINVAL);
    sampler *t = NULL;
    T_CHECK(sampler_create(0, &sp, &t) == -EINVAL && t == NULL);
    sampler_free(s);
    sampler_free(NULL);
}

static void test_sampler_streams(void)
{
    enum { V = 64 };
    float flat[V] = { 0 };
    struct sample_params a = { 1, 1, 5, 0 }, b = { 1, 1, 5, 1 };
    sampler *s, *t;
    T_CHECK(sampler_create(V, &a, &s) == 0 && sampler_create(V, &b, &t) == 0);
    int seq[100], differ = 0;
    for (int i = 0; i < 100; i++) {
        seq[i] = sampler_next(s, flat);
        differ += seq[i] != sampler_next(t, flat);
    }
    T_CHECK(differ > 50);
    T_CHECK(sampler_set(s, &a) == 0); /* restarted: the same draws */
    int same = 0;
    for (int i = 0; i < 100; i++) same += seq[i] == sampler_next(s, flat);
    T_CHECK(same == 100);
    sampler_free(s);
    sampler_free(t);
}

/* ---- the loop on a model ------------------------------------------------- */

struct fx {
    model *m;
    gguf *g;
    tok *tk;
    model_ctx *mc;
    kvs *kv;
    gen *gen;
    struct rope_params rp; /* the file's positions */
    int V;
};

static int fx_open(struct fx *f, const char *path, int n_batch)
{
    memset(f, 0, sizeof *f);
    char err[256];
    if (model_open(path, &f->m, err, sizeof err) < 0) return -1;
    if (gguf_open(path, &f->g, err, sizeof err) < 0 || tok_open(f->g, &f->tk, err, sizeof err) < 0)
        return -1;
    const struct model_hparams *hp = model_hparams(f->m);
    f->V = hp->n_vocab;
    struct model_ctx_params p = { .n_batch = n_batch, .n_threads = 2, .tile_tokens = 16 };
    struct kvs_config cfg = { .n_layer = hp->n_layer, .kv_dim = hp->kv_dim, .tile_tokens = 16,
                              .backing = KVS_RAM, .type = KVS_F32 };
    model_kv_pairing(f->m, &cfg.head_dim, &cfg.neox_rot);
    f->rp = hp->rope;
    if (model_ctx_create(f->m, &p, &f->mc) < 0 || kvs_open(&cfg, &f->kv) < 0) return -1;
    return gen_create(f->m, f->tk, &f->gen);
}

/* Defaults with N_PREDICT, N_BATCH and the file's positions. */
static void fx_params(struct fx *f, struct gen_params *p, int64_t n_predict, int n_batch)
{
    gen_params_default(p);
    p->n_predict = n_predict;
    p->n_batch = n_batch;
    p->rope = &f->rp;
}

static void fx_close(struct fx *f)
{
    gen_free(f->gen);
    kvs_close(f->kv);
    model_ctx_free(f->mc);
    tok_free(f->tk);
    gguf_close(f->g);
    model_close(f->m);
}

/* Prompt tokens with room for N_MORE. */
static int64_t prompt(const struct fx *f, const char *text, int64_t n_more, int32_t **ids)
{
    size_t len = strlen(text), cap = tok_encode_bound(len) + (size_t)n_more;
    *ids = malloc(cap * sizeof **ids);
    return tok_encode(f->tk, text, len, 1, *ids, cap);
}

/* The reference loop: prefill in chunks, then sample / stop / evaluate as
 * generate.h says, with the reference sampler. @return tokens emitted. */
static int64_t ref_generate(struct fx *f, const int32_t *ids0, int64_t n, int64_t n_gen,
                            int n_batch, double temp, double top_p, uint64_t state, int feed_last,
                            int32_t *out)
{
    int32_t *ids = malloc((size_t)(n + n_gen) * sizeof *ids);
    memcpy(ids, ids0, (size_t)n * sizeof *ids);
    float *lg = malloc((size_t)f->V * sizeof *lg);
    int rc = kvs_truncate(f->kv, 0);
    if (rc == 0) rc = model_ctx_set_rope(f->mc, &f->rp, n + n_gen) < 0;
    for (int64_t p0 = 0; rc == 0 && p0 < n; p0 += n_batch)
        rc = model_eval(f->mc, f->kv, ids + p0, (int)KVT_MIN((int64_t)n_batch, n - p0), p0, lg, 0);
    int64_t k = 0;
    for (; rc == 0 && k < n_gen; k++) {
        int id = ref_sample(lg, f->V, temp, top_p, &state);
        if (id == tok_eos(f->tk)) break;
        out[k] = ids[n + k] = id;
        if (k + 1 < n_gen || feed_last) rc = model_eval(f->mc, f->kv, ids + n + k, 1, n + k, lg, 0);
    }
    free(ids);
    free(lg);
    return rc == 0 ? k : -1;
}

static void test_generate_matches_reference(void)
{
    struct fx f;
    T_REQUIRE(fx_open(&f, MODEL, 8) == 0, "no model");
    const struct model_hparams *hp = model_hparams(f.m);
    int32_t *ids, ref[40], eos = tok_eos(f.tk);
    int64_t n = prompt(&f, "In the beginning God created", 40, &ids);
    T_CHECK(n > 2);
    gen *g = f.gen;
    struct gen_params p;
    fx_params(&f, &p, 40, 8);
    p.stop_ids = &eos;
    p.n_stop_ids = 1;
    p.sample = (struct sample_params){ 0.8, 0.9, 7, 0 };
    for (int feed = 0; feed < 2; feed++) {
        for (uint64_t stream = 0; stream < 3; stream += 2) {
            p.feed_last = feed;
            p.sample.stream = stream;
            struct gen_result r;
            T_CHECK(kvs_truncate(f.kv, 0) == 0);
            T_CHECK(gen_run(g, f.mc, f.kv, ids, 0, n, &p, &r) == 0);
            uint64_t st = (7 ^ (stream * STREAM)) * GOLDEN + 1;
            int64_t nr = ref_generate(&f, ids, n, 40, 8, 0.8, 0.9, st, feed, ref);
            T_CHECK(nr == r.n_out && memcmp(ref, ids + n, (size_t)nr * sizeof *ref) == 0);
            T_CHECK(r.finish == (nr == 40 ? GEN_FINISH_LENGTH : GEN_FINISH_TOKEN));
            T_CHECK(r.n_prefill == n && r.n_decode == r.n_out - (!feed && r.n_out == 40));
            T_CHECK(r.decode_st.steps == r.n_decode * hp->n_layer);
            /* the text is the pieces of the emitted tokens */
            char want[40 * 64] = "", piece[64];
            for (int64_t k = 0; k < r.n_out; k++) {
                int w = tok_decode_piece(f.tk, ids[n + k], piece, sizeof piece - 1);
                piece[w > 0 ? w : 0] = 0;
                strcat(want, piece);
            }
            T_CHECK(strcmp(gen_text(g, NULL), want) == 0);
        }
    }
    /* the store after the run: prompt + emitted (+ the last with feed_last) */
    struct gen_result r;
    p.feed_last = 1;
    T_CHECK(kvs_truncate(f.kv, 0) == 0 && gen_run(g, f.mc, f.kv, ids, 0, n, &p, &r) == 0);
    T_CHECK(kvs_n_tokens(f.kv) == n + r.n_out);
    p.feed_last = 0;
    T_CHECK(kvs_truncate(f.kv, 0) == 0 && gen_run(g, f.mc, f.kv, ids, 0, n, &p, &r) == 0);
    T_CHECK(r.n_out < 1 || r.finish != GEN_FINISH_LENGTH || kvs_n_tokens(f.kv) == n + r.n_out - 1);
    /* from > 0: the store holds the first tokens already */
    p.sample.temp = 0;
    T_CHECK(kvs_truncate(f.kv, 0) == 0 && gen_run(g, f.mc, f.kv, ids, 0, n, &p, &r) == 0);
    int32_t first[40];
    memcpy(first, ids + n, (size_t)r.n_out * sizeof *first);
    int64_t n_first = r.n_out;
    struct gen_prefill_params pp = { .n_batch = 3, .logits = GEN_LOGITS_NONE };
    T_CHECK(kvs_truncate(f.kv, 0) == 0 && gen_prefill(f.mc, f.kv, ids, 0, 2, &pp) == 0);
    T_CHECK(gen_run(g, f.mc, f.kv, ids, 2, n, &p, &r) == 0);
    T_CHECK(r.n_prefill == n - 2 && r.n_out == n_first);
    T_CHECK(memcmp(first, ids + n, (size_t)n_first * sizeof *first) == 0);
    free(ids);
    fx_close(&f);
}

static int stop_after(void *user, int32_t id, const char *piece, int len)
{
    int *left = user;
    (void)id;
    (void)piece;
    (void)len;
    if (*left < 0) return *left;
    return --*left == 0;
}

static void test_generate_stops(void)
{
    struct fx f;
    T_REQUIRE(fx_open(&f, MODEL, 16) == 0, "no model");
    int32_t *ids;
    int64_t n = prompt(&f, "And God said", 30, &ids);
    gen *g = f.gen;
    struct gen_params p;
    fx_params(&f, &p, 30, 16);
    p.feed_last = 0;
    struct gen_result r;
    T_CHECK(gen_run(g, f.mc, f.kv, ids, 0, n, &p, &r) == 0 && r.n_out == 30);
    char full[4096];
    size_t full_len;
    snprintf(full, sizeof full, "%s", gen_text(g, &full_len));
    int32_t toks[30];
    memcpy(toks, ids + n, sizeof toks);
    T_CHECK(full_len > 12);
    /* a stop string from the middle of the text, and one that never occurs */
    char stop[4];
    memcpy(stop, full + full_len / 2, 3);
    stop[3] = 0;
    const char *first = strstr(full, stop);
    const char *stops[] = { "#never#", stop };
    p.stop_strs = stops;
    p.n_stop_strs = 2;
    T_CHECK(kvs_truncate(f.kv, 0) == 0 && gen_run(g, f.mc, f.kv, ids, 0, n, &p, &r) == 0);
    T_CHECK(r.finish == GEN_FINISH_STOP);
    size_t len;
    const char *text = gen_text(g, &len);
    T_CHECK(len == (size_t)(first - full) && memcmp(text, full, len) == 0 && text[len] == 0);
    /* emitted: the tokens up to the one whose piece completes the stop */
    char piece[256];
    size_t upto = 0;
    int64_t need = 0;
    while (upto < (size_t)(first - full) + 3) {
        int w = tok_decode_piece(f.tk, toks[need++], piece, sizeof piece);
        upto += (size_t)(w > 0 ? w : 0);
    }
    T_CHECK(r.n_out == need && memcmp(ids + n, toks, (size_t)need * sizeof *toks) == 0);
    T_CHECK(kvs_n_tokens(f.kv) == n + need - 1);
    /* the callback: stop after 3 tokens; fail with its error */
    p.n_stop_strs = 0;
    int left = 3;
    p.on_token = stop_after;
    p.user = &left;
    T_CHECK(kvs_truncate(f.kv, 0) == 0 && gen_run(g, f.mc, f.kv, ids, 0, n, &p, &r) == 0);
    T_CHECK(r.finish == GEN_FINISH_CALLBACK && r.n_out == 3);
    left = -EIO;
    T_CHECK(kvs_truncate(f.kv, 0) == 0 && gen_run(g, f.mc, f.kv, ids, 0, n, &p, &r) == -EIO);
    T_CHECK(r.fail == GEN_FAIL_CALLBACK && r.n_out == 1);
    /* bad parameters: nothing evaluated */
    p.on_token = NULL;
    T_CHECK(kvs_truncate(f.kv, 0) == 0);
    T_CHECK(gen_run(g, f.mc, f.kv, ids, n, n, &p, &r) == -EINVAL && r.fail == GEN_FAIL_PARAMS);
    p.grow = 1;
    p.rope = NULL;
    T_CHECK(gen_run(g, f.mc, f.kv, ids, 0, n, &p, &r) == -EINVAL && r.fail == GEN_FAIL_PARAMS);
    const char *empty[] = { "" };
    p.grow = 0;
    p.stop_strs = empty;
    p.n_stop_strs = 1;
    T_CHECK(gen_run(g, f.mc, f.kv, ids, 0, n, &p, &r) == -EINVAL && kvs_n_tokens(f.kv) == 0);
    gen_free(NULL);
    free(ids);
    fx_close(&f);
}

struct chunks {
    int calls;
    int64_t pos0[8];
    int n[8];
    double err;
    const float *want;
    int V;
};

static int on_chunk(void *user, int64_t pos0, int n, const float *logits)
{
    struct chunks *c = user;
    c->pos0[c->calls] = pos0;
    c->n[c->calls++] = n;
    for (size_t i = 0; i < (size_t)n * (size_t)c->V; i++)
        c->err = fmax(c->err, fabs(logits[i] - c->want[(size_t)pos0 * c->V + i]));
    return c->calls == 4 ? -ENOSPC : 0;
}

static void test_prefill_chunks(void)
{
    struct fx f;
    T_REQUIRE(fx_open(&f, MODEL, 5) == 0, "no model");
    int32_t *ids;
    int64_t n = prompt(&f, "In the beginning God created the heaven and the earth.", 0, &ids);
    T_CHECK(n >= 17);
    n = 17;
    float *want = malloc((size_t)n * f.V * sizeof *want), *buf = malloc((size_t)5 * f.V * sizeof *buf);
    T_CHECK(t_engine_logits(f.m, ids, (int)n, 17, 16, 2, 0, 0, want) == 0); /* one shot */
    struct chunks c = { .want = want, .V = f.V };
    struct gen_prefill_params pp = { 5, GEN_LOGITS_ALL, buf, on_chunk, &c };
    T_CHECK(model_ctx_set_rope(f.mc, &f.rp, n) >= 0);
    T_CHECK(gen_prefill(f.mc, f.kv, ids, 0, 3, &(struct gen_prefill_params){ .n_batch = 2, .logits = GEN_LOGITS_NONE }) == 0);
    T_CHECK(gen_prefill(f.mc, f.kv, ids, 3, n, &pp) == 0);
    T_CHECK(c.calls == 3 && c.pos0[0] == 3 && c.pos0[1] == 8 && c.pos0[2] == 13);
    T_CHECK(c.n[0] == 5 && c.n[1] == 5 && c.n[2] == 4 && kvs_n_tokens(f.kv) == n);
    T_CHECK(c.err < 1e-3);
    /* the callback's error stops the prefill */
    c.calls = 3;
    T_CHECK(kvs_truncate(f.kv, 0) == 0 && gen_prefill(f.mc, f.kv, ids, 0, n, &pp) == -ENOSPC);
    T_CHECK(kvs_n_tokens(f.kv) == 5);
    pp.logits_buf = NULL;
    T_CHECK(gen_prefill(f.mc, f.kv, ids, 5, n, &pp) == -EINVAL);
    free(want);
    free(buf);
    free(ids);
    fx_close(&f);
}

/* LongRoPE switches to long factors past 256 tokens: with grow + exact the
 * prefix is evaluated again, so every emitted token is the greedy choice of
 * a fresh evaluation of the text so far under its length's table. */
static void test_generate_exact(void)
{
    struct fx f;
    T_REQUIRE(fx_open(&f, MODEL_LR, 64) == 0, "no longrope model");
    FILE *in = fopen(T_DATA("kjv.txt"), "rb");
    T_REQUIRE(in != NULL, "no kjv.txt");
    char text[701];
    text[fread(text, 1, 700, in)] = 0;
    fclose(in);
    int32_t *ids;
    const int64_t n_gen = 24;
    int64_t n = prompt(&f, text, n_gen, &ids);
    T_CHECK(n < 256 && n + n_gen > 257);
    gen *g = f.gen;
    struct gen_params p;
    fx_params(&f, &p, n_gen, 64);
    p.grow = p.exact = 1;
    struct gen_result r;
    T_CHECK(gen_run(g, f.mc, f.kv, ids, 0, n, &p, &r) == 0);
    T_CHECK(r.n_out == n_gen && r.n_reeval == 1 && kvs_n_tokens(f.kv) == n + n_gen);
    /* reference: for each token, a fresh store and table for its length */
    float *lg = malloc((size_t)f.V * sizeof *lg);
    int mismatch = 0;
    for (int64_t k = 0; k < n_gen; k++) {
        int64_t len = n + k; /* tokens before the one to predict */
        int rc = kvs_truncate(f.kv, 0);
        if (rc == 0) rc = model_ctx_set_rope(f.mc, &f.rp, len) < 0;
        for (int64_t p0 = 0; rc == 0 && p0 < len; p0 += 64)
            rc = model_eval(f.mc, f.kv, ids + p0, (int)KVT_MIN((int64_t)64, len - p0), p0, lg, 0);
        T_CHECK(rc == 0);
        mismatch += sample_greedy(lg, f.V) != ids[n + k];
    }
    T_CHECK(mismatch == 0);
    free(lg);
    free(ids);
    fx_close(&f);
}

int main(void)
{
    T_RUN(test_sampler_reference);
    T_RUN(test_sampler_distribution);
    T_RUN(test_sampler_streams);
    T_RUN(test_generate_matches_reference);
    T_RUN(test_generate_stops);
    T_RUN(test_prefill_chunks);
    T_RUN(test_generate_exact);
    return t_done();
}
