/* model.c - load a GGUF transformer and evaluate it (see model.h). */
#include "model.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "attn.h"
#include "matmul.h"
#include "base/kvt.h"

struct model {
    gguf *g;
    struct model_hparams hp;
    const gguf_tensor *tok_embd, *output_norm, *output;
    struct layer_weights *layers;  /* (n_layer) */
    float *norms;                  /* f32 copies of norm weights and biases */
    const float *attn_norm_f, *ffn_norm_f; /* (n_layer, n_embd) */
    const float *out_norm_f;       /* (n_embd) */
    const float *bq_f, *bk_f, *bv_f; /* (n_layer, q_dim / kv_dim) or NULL */
    uint8_t fp[32];
};

static int fail(char *err, size_t cap, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (cap) vsnprintf(err, cap, fmt, ap);
    va_end(ap);
    return rc;
}

/* "{arch}.suffix" */
static const char *akey(const model *m, const char *suffix, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s.%s", m->hp.arch_name, suffix);
    return buf;
}

static int get_i(const model *m, const char *suffix, int64_t *v, int required,
                 char *err, size_t cap)
{
    char k[128];
    int rc = gguf_get_int(m->g, akey(m, suffix, k, sizeof k), v);
    if (rc < 0 && (required || rc != KVT_EMISSING))
        return fail(err, cap, rc, "metadata %s: %s", k, kvt_strerror(rc));
    return rc < 0 ? 0 : 1;
}

static int get_f(const model *m, const char *suffix, double *v)
{
    char k[128];
    return gguf_get_float(m->g, akey(m, suffix, k, sizeof k), v) >= 0;
}

/* Find tensor NAME with shape (ne0, ne1) (ne1 = 0: 1-D). */
static int need(model *m, const char *name, int64_t ne0, int64_t ne1,
                int optional, const gguf_tensor **out, char *err, size_t cap)
{
    const gguf_tensor *t = gguf_find_tensor(m->g, name);
    *out = t;
    if (!t) {
        if (optional) return 0;
        return fail(err, cap, KVT_EMISSING, "missing tensor '%s'", name);
    }
    int64_t want1 = ne1 ? ne1 : 1;
    if (t->ne[0] != ne0 || t->ne[1] != want1 || t->ne[2] != 1 || t->ne[3] != 1)
        return fail(err, cap, KVT_ESHAPE,
                    "tensor '%s' has shape (%lld, %lld, %lld, %lld), expected (%lld, %lld)",
                    name, (long long)t->ne[0], (long long)t->ne[1],
                    (long long)t->ne[2], (long long)t->ne[3], (long long)ne0,
                    (long long)want1);
    if (!mm_type_supported(t->type))
        return fail(err, cap, KVT_ETYPE, "tensor '%s' has unsupported type %s",
                    name, ggml_type_name(t->type));
    return 1;
}

static int load_hparams(model *m, char *err, size_t cap)
{
    struct model_hparams *hp = &m->hp;
    const char *s;
    size_t len;
    int rc = gguf_get_str(m->g, "general.architecture", &s, &len);
    if (rc < 0) return fail(err, cap, rc, "metadata general.architecture: %s", kvt_strerror(rc));
    if (len >= sizeof hp->arch_name) len = sizeof hp->arch_name - 1;
    memcpy(hp->arch_name, s, len);
    hp->arch_name[len] = 0;
    if (!strcmp(hp->arch_name, "llama")) hp->arch = ARCH_LLAMA;
    else if (!strcmp(hp->arch_name, "phi3")) hp->arch = ARCH_PHI3;
    else if (!strcmp(hp->arch_name, "qwen2")) hp->arch = ARCH_QWEN2;
    else return fail(err, cap, KVT_EARCH, "unsupported architecture '%s' (supported: llama, phi3, qwen2)", hp->arch_name);

    int64_t v;
    if ((rc = get_i(m, "embedding_length", &v, 1, err, cap)) < 0) return rc;
    hp->n_embd = (int)v;
    if ((rc = get_i(m, "block_count", &v, 1, err, cap)) < 0) return rc;
    hp->n_layer = (int)v;
    if ((rc = get_i(m, "feed_forward_length", &v, 1, err, cap)) < 0) return rc;
    hp->n_ff = (int)v;
    if ((rc = get_i(m, "attention.head_count", &v, 1, err, cap)) < 0) return rc;
    hp->n_head = (int)v;
    hp->n_head_kv = hp->n_head;
    if ((rc = get_i(m, "attention.head_count_kv", &v, 0, err, cap)) < 0) return rc;
    if (rc) hp->n_head_kv = (int)v;
    if ((rc = get_i(m, "context_length", &v, 1, err, cap)) < 0) return rc;
    hp->n_ctx_train = v;
    hp->sliding_window = 0;
    if ((rc = get_i(m, "attention.sliding_window", &v, 0, err, cap)) < 0) return rc;
    if (rc) hp->sliding_window = v;

    if (hp->n_embd <= 0 || hp->n_embd > 65536 || hp->n_layer <= 0 ||
        hp->n_layer > 1024 || hp->n_ff <= 0 || hp->n_ff > 1 << 20 ||
        hp->n_head <= 0 || hp->n_head > 1024 || hp->n_head_kv <= 0 ||
        hp->n_head % hp->n_head_kv != 0 || hp->n_embd % hp->n_head != 0 ||
        hp->n_ctx_train <= 0 || hp->sliding_window < 0)
        return fail(err, cap, KVT_ERANGE,
                    "inconsistent hyper-parameters (n_embd %d, n_layer %d, n_ff %d, n_head %d, n_head_kv %d, context %lld)",
                    hp->n_embd, hp->n_layer, hp->n_ff, hp->n_head, hp->n_head_kv,
                    (long long)hp->n_ctx_train);
    hp->head_dim = hp->n_embd / hp->n_head;
    hp->kv_dim = hp->n_head_kv * hp->head_dim;
    double eps = 1e-5;
    get_f(m, "attention.layer_norm_rms_epsilon", &eps);
    hp->rms_eps = (float)eps;
    return 0;
}

static int load_rope(model *m, char *err, size_t cap)
{
    struct model_hparams *hp = &m->hp;
    struct rope_params *rp = &hp->rope;
    int64_t v;
    int rc;
    int n_rot = hp->head_dim;
    if ((rc = get_i(m, "rope.dimension_count", &v, 0, err, cap)) < 0) return rc;
    if (rc) n_rot = (int)v;
    if (n_rot <= 0 || n_rot > hp->head_dim || n_rot % 2 || n_rot / 2 > ROPE_MAX_PAIRS)
        return fail(err, cap, KVT_ERANGE, "rope.dimension_count %d does not fit head size %d", n_rot, hp->head_dim);
    double base = 10000.0;
    get_f(m, "rope.freq_base", &base);
    rope_params_default(rp, n_rot, base);
    rp->neox = hp->arch != ARCH_LLAMA;
    rp->orig_ctx = hp->n_ctx_train;
    if ((rc = get_i(m, "rope.scaling.original_context_length", &v, 0, err, cap)) < 0) return rc;
    if (rc && v > 0) rp->orig_ctx = v;
    double f;
    if (get_f(m, "rope.scaling.factor", &f) && f > 0) rp->scale = f;
    if (get_f(m, "rope.scaling.attn_factor", &f) && f > 0) rp->attn_factor = f;

    char k[128];
    const char *s;
    size_t len;
    rp->scheme = ROPE_NONE;
    if (gguf_get_str(m->g, akey(m, "rope.scaling.type", k, sizeof k), &s, &len) >= 0) {
        if (len == 6 && !memcmp(s, "linear", 6)) rp->scheme = ROPE_LINEAR;
        else if (len == 4 && !memcmp(s, "yarn", 4)) rp->scheme = ROPE_YARN;
        else if ((len == 8 && !memcmp(s, "longrope", 8)) || (len == 2 && !memcmp(s, "su", 2)))
            rp->scheme = ROPE_LONGROPE;
        else if (!(len == 4 && !memcmp(s, "none", 4)))
            return fail(err, cap, KVT_EUNSUPP, "metadata %s: unsupported rope scaling '%.*s'", k, (int)len, s);
    }
    int half = n_rot / 2;
    const gguf_tensor *fl, *fs, *ff;
    if ((rc = need(m, "rope_factors_long.weight", half, 0, 1, &fl, err, cap)) < 0) return rc;
    if ((rc = need(m, "rope_factors_short.weight", half, 0, 1, &fs, err, cap)) < 0) return rc;
    if ((rc = need(m, "rope_freqs.weight", half, 0, 1, &ff, err, cap)) < 0) return rc;
    if (fl || fs) {
        rp->scheme = ROPE_LONGROPE;
        rp->have_factors = 1;
        for (int i = 0; i < half; i++) rp->factors_short[i] = rp->factors_long[i] = 1.0f;
        if (fl) mm_dequant(fl->type, fl->data, rp->factors_long, half);
        if (fs) mm_dequant(fs->type, fs->data, rp->factors_short, half);
        if (rp->scale <= 1.0 && hp->n_ctx_train > rp->orig_ctx)
            rp->scale = (double)hp->n_ctx_train / (double)rp->orig_ctx;
    }
    if (ff) {
        rp->have_freq_factors = 1;
        mm_dequant(ff->type, ff->data, rp->freq_factors, half);
    }
    return 0;
}

static int load_tensors(model *m, char *err, size_t cap)
{
    struct model_hparams *hp = &m->hp;
    int rc, E = hp->n_embd, F = hp->n_ff, KV = hp->kv_dim;
    const gguf_tensor *te = gguf_find_tensor(m->g, "token_embd.weight");
    if (!te) return fail(err, cap, KVT_EMISSING, "missing tensor 'token_embd.weight'");
    hp->n_vocab = (int)te->ne[1];
    if (te->ne[1] <= 0 || te->ne[1] > (1 << 24))
        return fail(err, cap, KVT_ERANGE, "token_embd.weight has %lld rows", (long long)te->ne[1]);
    if ((rc = need(m, "token_embd.weight", E, hp->n_vocab, 0, &m->tok_embd, err, cap)) < 0) return rc;
    if ((rc = need(m, "output_norm.weight", E, 0, 0, &m->output_norm, err, cap)) < 0) return rc;
    if ((rc = need(m, "output.weight", E, hp->n_vocab, 1, &m->output, err, cap)) < 0) return rc;
    if (!m->output) m->output = m->tok_embd; /* tied embeddings */

    m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (!m->layers) return -ENOMEM;
    char name[96];
#define T(field, suffix, ne0, ne1, opt)                                         \
    do {                                                                        \
        snprintf(name, sizeof name, "blk.%d." suffix, il);                      \
        if ((rc = need(m, name, ne0, ne1, opt, &L->field, err, cap)) < 0)       \
            return rc;                                                          \
    } while (0)
    for (int il = 0; il < hp->n_layer; il++) {
        struct layer_weights *L = &m->layers[il];
        T(attn_norm, "attn_norm.weight", E, 0, 0);
        T(ffn_norm, "ffn_norm.weight", E, 0, 0);
        T(wo, "attn_output.weight", E, E, 0);
        T(w_down, "ffn_down.weight", F, E, 0);
        if (hp->arch == ARCH_PHI3) {
            T(wqkv, "attn_qkv.weight", E, E + 2 * KV, 0);
            T(w_up, "ffn_up.weight", E, 2 * F, 0);
            L->fused_gate_up = 1;
        } else {
            T(wq, "attn_q.weight", E, E, 0);
            T(wk, "attn_k.weight", E, KV, 0);
            T(wv, "attn_v.weight", E, KV, 0);
            T(w_gate, "ffn_gate.weight", E, F, 0);
            T(w_up, "ffn_up.weight", E, F, 0);
            int qw = hp->arch == ARCH_QWEN2;
            T(bq, "attn_q.bias", E, 0, !qw);
            T(bk, "attn_k.bias", KV, 0, !qw);
            T(bv, "attn_v.bias", KV, 0, !qw);
        }
    }
#undef T
    /* f32 copies of the small vectors */
    size_t per = (size_t)2 * E + (size_t)E + 2 * (size_t)KV;
    m->norms = malloc(((size_t)hp->n_layer * per + (size_t)E) * sizeof(float));
    if (!m->norms) return -ENOMEM;
    float *an = m->norms, *fn = an + (size_t)hp->n_layer * E;
    float *bq = fn + (size_t)hp->n_layer * E, *bk = bq + (size_t)hp->n_layer * E;
    float *bv = bk + (size_t)hp->n_layer * KV, *on = bv + (size_t)hp->n_layer * KV;
    for (int il = 0; il < hp->n_layer; il++) {
        const struct layer_weights *L = &m->layers[il];
        mm_dequant(L->attn_norm->type, L->attn_norm->data, an + (size_t)il * E, E);
        mm_dequant(L->ffn_norm->type, L->ffn_norm->data, fn + (size_t)il * E, E);
        if (L->bq) mm_dequant(L->bq->type, L->bq->data, bq + (size_t)il * E, E);
        if (L->bk) mm_dequant(L->bk->type, L->bk->data, bk + (size_t)il * KV, KV);
        if (L->bv) mm_dequant(L->bv->type, L->bv->data, bv + (size_t)il * KV, KV);
    }
    mm_dequant(m->output_norm->type, m->output_norm->data, on, E);
    m->attn_norm_f = an;
    m->ffn_norm_f = fn;
    m->out_norm_f = on;
    if (m->layers[0].bq) { m->bq_f = bq; m->bk_f = bk; m->bv_f = bv; }
    return 0;
}

/* One named value into the fingerprint (the name keeps two fields with the
 * same bytes from swapping unnoticed). */
static void fp_i(XXH3_state_t *st, const char *name, int64_t v)
{
    XXH3_128bits_update(st, name, strlen(name) + 1);
    XXH3_128bits_update(st, &v, sizeof v);
}

static void fp_d(XXH3_state_t *st, const char *name, double v)
{
    XXH3_128bits_update(st, name, strlen(name) + 1);
    XXH3_128bits_update(st, &v, sizeof v);
}

static void fp_floats(XXH3_state_t *st, const char *name, const float *v, int n)
{
    XXH3_128bits_update(st, name, strlen(name) + 1);
    XXH3_128bits_update(st, v, (size_t)n * sizeof *v);
}

/* The hyper-parameters field by field, not the struct's bytes: a field
 * added to the struct later must not change the fingerprint of every
 * model (and so refuse every cache and journal made before). Rule for new
 * fields: hash them only when they differ from their default. */
static void fp_hparams(XXH3_state_t *st, const struct model_hparams *hp)
{
    fp_i(st, "arch", hp->arch);
    XXH3_128bits_update(st, hp->arch_name, strnlen(hp->arch_name, sizeof hp->arch_name));
    fp_i(st, "n_embd", hp->n_embd);
    fp_i(st, "n_layer", hp->n_layer);
    fp_i(st, "n_head", hp->n_head);
    fp_i(st, "n_head_kv", hp->n_head_kv);
    fp_i(st, "head_dim", hp->head_dim);
    fp_i(st, "n_ff", hp->n_ff);
    fp_i(st, "n_vocab", hp->n_vocab);
    fp_i(st, "kv_dim", hp->kv_dim);
    fp_i(st, "n_ctx_train", hp->n_ctx_train);
    fp_d(st, "rms_eps", hp->rms_eps);
    fp_i(st, "sliding_window", hp->sliding_window);
    const struct rope_params *r = &hp->rope;
    fp_i(st, "rope.scheme", r->scheme);
    fp_i(st, "rope.n_rot", r->n_rot);
    fp_i(st, "rope.neox", r->neox);
    fp_d(st, "rope.freq_base", r->freq_base);
    fp_d(st, "rope.scale", r->scale);
    fp_i(st, "rope.orig_ctx", r->orig_ctx);
    fp_d(st, "rope.attn_factor", r->attn_factor);
    fp_d(st, "rope.beta_fast", r->beta_fast);
    fp_d(st, "rope.beta_slow", r->beta_slow);
    fp_d(st, "rope.ext_factor", r->ext_factor);
    fp_i(st, "rope.n_hat", r->n_hat);
    if (r->mscale_mult != 0.0 && r->mscale_mult != 1.0)
        fp_d(st, "rope.mscale_mult", r->mscale_mult);
    if (r->have_factors) {
        fp_floats(st, "rope.factors_short", r->factors_short, r->n_rot / 2);
        fp_floats(st, "rope.factors_long", r->factors_long, r->n_rot / 2);
    }
    if (r->have_freq_factors)
        fp_floats(st, "rope.freq_factors", r->freq_factors, r->n_rot / 2);
}

/* Hash of the hyper-parameters, every tensor's name, type and shape, and
 * the first and last 4 KiB of every tensor's data (hashing all of a
 * multi-GB model at every start would cost seconds). */
static void fingerprint(model *m)
{
    XXH3_state_t *st = XXH3_createState();
    KVT_ASSERT(st);
    uint8_t *fp = m->fp;
    for (int round = 0; round < 2; round++) {
        XXH3_128bits_reset_withSeed(st, 0x6b767469 + (XXH64_hash_t)round);
        fp_hparams(st, &m->hp);
        for (int i = 0; i < gguf_n_tensors(m->g); i++) {
            const gguf_tensor *t = gguf_tensor_at(m->g, i);
            XXH3_128bits_update(st, t->name, strlen(t->name));
            XXH3_128bits_update(st, &t->type, sizeof t->type);
            XXH3_128bits_update(st, t->ne, sizeof t->ne);
            size_t n = t->size < 4096 ? t->size : 4096;
            XXH3_128bits_update(st, t->data, n);
            XXH3_128bits_update(st, (const char *)t->data + t->size - n, n);
        }
        XXH128_hash_t h = XXH3_128bits_digest(st);
        XXH128_canonical_t c;
        XXH128_canonicalFromHash(&c, h);
        memcpy(fp + 16 * round, c.digest, 16);
    }
    XXH3_freeState(st);
}

int model_open(const char *path, model **out, char *err, size_t err_cap)
{
    model *m = calloc(1, sizeof *m);
    if (!m) return -ENOMEM;
    int rc = gguf_open(path, &m->g, err, err_cap);
    if (rc < 0) { free(m); return rc; }
    memset(&m->hp, 0, sizeof m->hp);
    if ((rc = load_hparams(m, err, err_cap)) < 0 ||
        (rc = load_rope(m, err, err_cap)) < 0 ||
        (rc = load_tensors(m, err, err_cap)) < 0) {
        if (rc == -ENOMEM) fail(err, err_cap, rc, "out of memory");
        model_close(m);
        return rc;
    }
    fingerprint(m);
    *out = m;
    return 0;
}

void model_close(model *m)
{
    if (!m) return;
    gguf_close(m->g);
    free(m->layers);
    free(m->norms);
    free(m);
}

const struct model_hparams *model_hparams(const model *m) { return &m->hp; }
const gguf *model_gguf(const model *m) { return m->g; }
const struct layer_weights *model_layer(const model *m, int il)
{
    KVT_ASSERT(il >= 0 && il < m->hp.n_layer);
    return &m->layers[il];
}
void model_fingerprint(const model *m, uint8_t fp[32]) { memcpy(fp, m->fp, 32); }

/* ---- evaluation --------------------------------------------------------- */

struct model_ctx {
    const model *m;
    struct model_ctx_params p;
    pool *pool;
    mm_ctx *mm;
    attn_ctx *attn;
    struct rope_table rt;
    int have_rope;
    /* activations, (n_batch, width) each */
    float *x, *xn, *q, *k, *v, *qkv, *att, *tmp, *gate, *up, *h;
    float *cs, *sn;  /* (n_batch, n_rot/2) rotation table for K on write */
};

void model_kv_pairing(const model *m, int *head_dim, int *neox_rot)
{
    *head_dim = m->hp.head_dim;
    *neox_rot = m->hp.rope.neox ? m->hp.rope.n_rot : 0;
}

void model_ctx_attn_stats(const model_ctx *c, struct attn_stats *st)
{
    attn_get_stats(c->attn, st);
}

void model_ctx_free(model_ctx *c)
{
    if (!c) return;
    attn_ctx_free(c->attn);
    mm_ctx_free(c->mm);
    pool_free(c->pool);
    free(c->x); free(c->xn); free(c->q); free(c->k); free(c->v);
    free(c->qkv); free(c->att); free(c->tmp); free(c->gate); free(c->up);
    free(c->h); free(c->cs); free(c->sn);
    free(c);
}

int model_default_threads(void)
{
    long nproc = sysconf(_SC_NPROCESSORS_ONLN);
    return nproc > 0 ? (int)nproc : 1;
}

int model_ctx_create(const model *m, const struct model_ctx_params *p,
                     model_ctx **out)
{
    KVT_ASSERT(p->n_batch > 0 && p->n_threads > 0 && p->tile_tokens > 0);
    const struct model_hparams *hp = &m->hp;
    model_ctx *c = calloc(1, sizeof *c);
    if (!c) return -ENOMEM;
    c->m = m;
    c->p = *p;
    int rc = pool_create(p->n_threads, &c->pool);
    if (rc < 0) { free(c); return rc; }
    int64_t max_in = KVT_MAX(hp->n_embd, hp->n_ff);
    if ((rc = mm_ctx_create(c->pool, max_in, &p->mm, &c->mm)) < 0) goto fail;
    struct attn_params ap = {
        .n_head = hp->n_head, .n_head_kv = hp->n_head_kv,
        .head_dim = hp->head_dim, .max_q = p->n_batch,
        .tile_tokens = p->tile_tokens, .window = hp->sliding_window,
        .se_group = p->se_group, .se_window = p->se_window,
        .k_rotated = p->rotate_k_on_write, .sel = p->sel,
        .cpu_set = mm_ctx_cpu_set(c->mm),
    };
    if (p->rotate_k_on_write && p->se_group > 1) { rc = KVT_EUNSUPP; goto fail; }
    if ((rc = attn_ctx_create(&ap, c->pool, &c->attn)) < 0) goto fail;
    size_t B = (size_t)p->n_batch, E = (size_t)hp->n_embd, KV = (size_t)hp->kv_dim;
    size_t F = (size_t)hp->n_ff;
    c->x = malloc(B * E * sizeof(float));
    c->xn = malloc(B * E * sizeof(float));
    c->q = malloc(B * E * sizeof(float));
    c->k = malloc(B * KV * sizeof(float));
    c->v = malloc(B * KV * sizeof(float));
    c->qkv = malloc(B * (E + 2 * KV) * sizeof(float));
    c->att = malloc(B * E * sizeof(float));
    c->tmp = malloc(B * E * sizeof(float));
    c->gate = malloc(B * 2 * F * sizeof(float));
    c->up = malloc(B * F * sizeof(float));
    c->h = malloc(B * F * sizeof(float));
    c->cs = malloc(B * (size_t)(hp->rope.n_rot / 2 + 1) * sizeof(float));
    c->sn = malloc(B * (size_t)(hp->rope.n_rot / 2 + 1) * sizeof(float));
    if (!c->x || !c->xn || !c->q || !c->k || !c->v || !c->qkv || !c->att ||
        !c->tmp || !c->gate || !c->up || !c->h || !c->cs || !c->sn) { rc = -ENOMEM; goto fail; }
    *out = c;
    return 0;
fail:
    model_ctx_free(c);
    return rc;
}

static int rope_table_equal(const struct rope_table *a, const struct rope_table *b)
{
    if (a->n_rot != b->n_rot || a->neox != b->neox || a->n_hat != b->n_hat ||
        a->mscale != b->mscale || a->long_factors != b->long_factors)
        return 0;
    for (int i = 0; i < a->n_rot / 2; i++)
        if (a->freq[i] != b->freq[i] || a->freq_orig[i] != b->freq_orig[i]) return 0;
    return 1;
}

int model_ctx_set_rope(model_ctx *c, const struct rope_params *rp, int64_t seq_len)
{
    struct rope_table t;
    int rc = rope_prepare(rp, seq_len, &t);
    if (rc < 0) return rc;
    if ((rc = attn_reserve(c->attn, seq_len)) < 0) return rc;
    int changed = !c->have_rope || !rope_table_equal(&t, &c->rt);
    c->rt = t;
    c->have_rope = 1;
    return changed;
}

static void rmsnorm(const float *x, const float *w, float *out, int n, int d, float eps)
{
    for (int t = 0; t < n; t++) {
        const float *xr = x + (size_t)t * d;
        float *o = out + (size_t)t * d;
        double ss = 0.0;
        for (int i = 0; i < d; i++) ss += (double)xr[i] * xr[i];
        float scale = 1.0f / sqrtf((float)(ss / d) + eps);
        for (int i = 0; i < d; i++) o[i] = xr[i] * scale * w[i];
    }
}

static void add_bias(float *y, const float *b, int n, int d)
{
    for (int t = 0; t < n; t++)
        for (int i = 0; i < d; i++) y[(size_t)t * d + i] += b[i];
}

int model_eval(model_ctx *c, kvs *kv, const int32_t *tokens, int n,
               int64_t pos0, float *logits, int all_logits)
{
    return model_eval_rows(c, kv, tokens, n, pos0, logits, all_logits ? 0 : n - 1);
}

int model_eval_rows(model_ctx *c, kvs *kv, const int32_t *tokens, int n,
                    int64_t pos0, float *logits, int from)
{
    const model *m = c->m;
    const struct model_hparams *hp = &m->hp;
    KVT_ASSERT(n > 0 && n <= c->p.n_batch);
    KVT_ASSERT(c->have_rope);
    KVT_ASSERT(kvs_layer_tokens(kv, 0) == pos0);
    int E = hp->n_embd, KV = hp->kv_dim, F = hp->n_ff;
    size_t sE = (size_t)E;

    for (int t = 0; t < n; t++) {
        KVT_ASSERT(tokens[t] >= 0 && tokens[t] < hp->n_vocab);
        mm_get_row(m->tok_embd, tokens[t], c->x + (size_t)t * sE);
    }
    for (int il = 0; il < hp->n_layer; il++) {
        const struct layer_weights *L = &m->layers[il];
        rmsnorm(c->x, m->attn_norm_f + (size_t)il * sE, c->xn, n, E, hp->rms_eps);
        if (L->wqkv) {
            int W = E + 2 * KV;
            mm_matmul(c->mm, L->wqkv, c->xn, n, c->qkv);
            for (int t = 0; t < n; t++) {
                const float *r = c->qkv + (size_t)t * W;
                memcpy(c->q + (size_t)t * sE, r, sE * sizeof(float));
                memcpy(c->k + (size_t)t * KV, r + E, (size_t)KV * sizeof(float));
                memcpy(c->v + (size_t)t * KV, r + E + KV, (size_t)KV * sizeof(float));
            }
        } else {
            mm_matmul(c->mm, L->wq, c->xn, n, c->q);
            mm_matmul(c->mm, L->wk, c->xn, n, c->k);
            mm_matmul(c->mm, L->wv, c->xn, n, c->v);
            if (m->bq_f) {
                add_bias(c->q, m->bq_f + (size_t)il * sE, n, E);
                add_bias(c->k, m->bk_f + (size_t)il * KV, n, KV);
                add_bias(c->v, m->bv_f + (size_t)il * KV, n, KV);
            }
        }
        if (c->p.rotate_k_on_write) {
            int half = c->rt.n_rot / 2;
            rope_cos_sin_range(&c->rt, pos0, n, c->cs, c->sn);
            for (int t = 0; t < n; t++)
                rope_rotate(&c->rt, c->k + (size_t)t * KV, hp->n_head_kv,
                            hp->head_dim, c->cs + (size_t)t * half,
                            c->sn + (size_t)t * half);
        }
        int rc = attn_forward(c->attn, kv, il, &c->rt, c->q, c->k, c->v, n,
                              pos0, c->att);
        if (rc < 0) return rc;
        if ((rc = kvs_append(kv, il, c->k, c->v, n)) < 0) return rc;
        /* the next read: layer il+1 over [0, pos0), or this step's
         * successor's layer 0 (decode), unless selection picks tiles */
        int whole = n > 1 || !c->p.sel.on;
        if (il + 1 < hp->n_layer && pos0 > 0 && whole)
            rc = kvs_read_ahead(kv, il + 1, pos0);
        else if (il + 1 == hp->n_layer && n == 1 && whole)
            rc = kvs_read_ahead(kv, 0, pos0 + 1);
        if (rc < 0) return rc;
        mm_matmul(c->mm, L->wo, c->att, n, c->tmp);
        for (size_t i = 0; i < (size_t)n * sE; i++) c->x[i] += c->tmp[i];

        rmsnorm(c->x, m->ffn_norm_f + (size_t)il * sE, c->xn, n, E, hp->rms_eps);
        const float *gate, *up;
        size_t ld;
        if (L->fused_gate_up) {
            mm_matmul(c->mm, L->w_up, c->xn, n, c->gate); /* (n, 2F): gate|up */
            gate = c->gate;
            up = c->gate + F;
            ld = 2 * (size_t)F;
        } else {
            mm_matmul(c->mm, L->w_gate, c->xn, n, c->gate);
            mm_matmul(c->mm, L->w_up, c->xn, n, c->up);
            gate = c->gate;
            up = c->up;
            ld = (size_t)F;
        }
        /* h (n, F) = silu(gate) * up */
        for (int t = 0; t < n; t++) {
            const float *g = gate + (size_t)t * ld, *u = up + (size_t)t * ld;
            float *h = c->h + (size_t)t * F;
            for (int i = 0; i < F; i++) h[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
        }
        mm_matmul(c->mm, L->w_down, c->h, n, c->tmp);
        for (size_t i = 0; i < (size_t)n * sE; i++) c->x[i] += c->tmp[i];
    }
    if (!logits) return 0;
    KVT_ASSERT(from >= 0 && from < n);
    int rows = n - from;
    rmsnorm(c->x + (size_t)from * sE, m->out_norm_f, c->xn, rows, E, hp->rms_eps);
    mm_matmul(c->mm, m->output, c->xn, rows, logits);
    return 0;
}
