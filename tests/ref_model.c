/* ref_model.c - naive forward pass (see ref_model.h). Slow on purpose. */
#include "ref_model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/gguf.h"
#include "base/kvt.h"

static const float *W(const model *m, const char *name)
{
    const gguf_tensor *t = gguf_find_tensor(model_gguf(m), name);
    KVT_ASSERT(t);
    KVT_ASSERT(t->type == GGML_TYPE_F32);
    return t->data;
}

static const float *WL(const model *m, int il, const char *suffix)
{
    char name[96];
    snprintf(name, sizeof name, "blk.%d.%s", il, suffix);
    return W(m, name);
}

/* Optional F32 tensor of layer IL (qwen2's Q/K/V biases), NULL if absent. */
static const float *WL_opt(const model *m, int il, const char *suffix)
{
    char name[96];
    snprintf(name, sizeof name, "blk.%d.%s", il, suffix);
    const gguf_tensor *t = gguf_find_tensor(model_gguf(m), name);
    if (!t) return NULL;
    KVT_ASSERT(t->type == GGML_TYPE_F32);
    return t->data;
}

static void add(double *y, const float *b, int n)
{
    for (int i = 0; b && i < n; i++) y[i] += b[i];
}

static void rms(const double *x, const float *w, double *out, int n, double eps)
{
    double ss = 0;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    double s = 1.0 / sqrt(ss / n + eps);
    for (int i = 0; i < n; i++) out[i] = x[i] * s * w[i];
}

static void mv(const float *w, const double *x, int n_in, int n_out, double *y)
{
    for (int r = 0; r < n_out; r++) {
        double s = 0;
        for (int c = 0; c < n_in; c++) s += (double)w[(size_t)r * n_in + c] * x[c];
        y[r] = s;
    }
}

/* Rotate one head (d dims) to position p with table r. */
static void rot(double *x, int d, double p, const struct ref_rope *r)
{
    int half = r->n_rot / 2;
    for (int i = 0; i < half; i++) {
        double th = p * r->freq[i], c = cos(th) * r->mscale, s = sin(th) * r->mscale;
        int i0 = r->neox ? i : 2 * i, i1 = r->neox ? i + half : 2 * i + 1;
        double a = x[i0], b = x[i1];
        x[i0] = a * c - b * s;
        x[i1] = a * s + b * c;
    }
    (void)d;
}

void ref_rope_plain(struct ref_rope *r, int n_rot, double base)
{
    memset(r, 0, sizeof *r);
    r->n_rot = n_rot;
    r->mscale = 1.0;
    for (int i = 0; i < n_rot / 2; i++) r->freq[i] = pow(base, -2.0 * i / n_rot);
}

void ref_forward(const model *m, const int32_t *tokens, int n,
                 const struct ref_opts *o, double *logits)
{
    const struct model_hparams *hp = model_hparams(m);
    int E = hp->n_embd, D = hp->head_dim, H = hp->n_head, HKV = hp->n_head_kv;
    int KV = HKV * D, F = hp->n_ff, V = hp->n_vocab, L = hp->n_layer;
    double eps = hp->rms_eps;
    size_t per = (size_t)L * (size_t)n * (size_t)KV;
    double *kpre = malloc(per * sizeof *kpre), *krot = malloc(per * sizeof *krot);
    double *vv = malloc(per * sizeof *vv);
    double *x = malloc(sizeof(double) * E), *xn = malloc(sizeof(double) * E);
    double *q = malloc(sizeof(double) * E), *att = malloc(sizeof(double) * E);
    double *tmp = malloc(sizeof(double) * (F > E ? F : E));
    double *g = malloc(sizeof(double) * F), *u = malloc(sizeof(double) * F);
    double *sc = malloc(sizeof(double) * (size_t)n);
    double *qa = malloc(sizeof(double) * D), *ka = malloc(sizeof(double) * D);
    KVT_ASSERT(kpre && krot && vv && x && xn && q && att && tmp && g && u && sc && qa && ka);
    const float *emb = W(m, "token_embd.weight");
    for (int t = 0; t < n; t++) {
        const struct ref_rope *R = o->rope(t + 1, o->rope_ctx);
        for (int i = 0; i < E; i++) x[i] = emb[(size_t)tokens[t] * E + i];
        for (int il = 0; il < L; il++) {
            size_t base = ((size_t)il * n + (size_t)t) * (size_t)KV;
            rms(x, WL(m, il, "attn_norm.weight"), xn, E, eps);
            mv(WL(m, il, "attn_q.weight"), xn, E, E, q);
            mv(WL(m, il, "attn_k.weight"), xn, E, KV, kpre + base);
            mv(WL(m, il, "attn_v.weight"), xn, E, KV, vv + base);
            add(q, WL_opt(m, il, "attn_q.bias"), E);
            add(kpre + base, WL_opt(m, il, "attn_k.bias"), KV);
            add(vv + base, WL_opt(m, il, "attn_v.bias"), KV);
            memcpy(krot + base, kpre + base, sizeof(double) * KV);
            for (int h = 0; h < HKV; h++) rot(krot + base + (size_t)h * D, D, t, R);
            for (int h = 0; h < H; h++) {
                int hk = h / (H / HKV);
                double mx = -INFINITY;
                for (int s = 0; s <= t; s++) {
                    size_t ks = ((size_t)il * n + (size_t)s) * (size_t)KV + (size_t)hk * D;
                    double pq = t, pk = s;
                    if (o->se_g && t - s >= o->se_w) {
                        pq = (double)(t / o->se_g + o->se_w - o->se_w / o->se_g);
                        pk = (double)(s / o->se_g);
                    }
                    memcpy(qa, q + (size_t)h * D, sizeof(double) * D);
                    rot(qa, D, pq, R);
                    if (o->mixed) {
                        memcpy(ka, krot + ks, sizeof(double) * D);
                    } else {
                        memcpy(ka, kpre + ks, sizeof(double) * D);
                        rot(ka, D, pk, R);
                    }
                    double dot = 0;
                    for (int i = 0; i < D; i++) dot += qa[i] * ka[i];
                    sc[s] = dot / sqrt((double)D);
                    if (sc[s] > mx) mx = sc[s];
                }
                double sum = 0;
                for (int s = 0; s <= t; s++) { sc[s] = exp(sc[s] - mx); sum += sc[s]; }
                for (int i = 0; i < D; i++) {
                    double a = 0;
                    for (int s = 0; s <= t; s++)
                        a += sc[s] * vv[((size_t)il * n + (size_t)s) * (size_t)KV + (size_t)hk * D + i];
                    att[h * D + i] = a / sum;
                }
            }
            mv(WL(m, il, "attn_output.weight"), att, E, E, tmp);
            for (int i = 0; i < E; i++) x[i] += tmp[i];
            rms(x, WL(m, il, "ffn_norm.weight"), xn, E, eps);
            mv(WL(m, il, "ffn_gate.weight"), xn, E, F, g);
            mv(WL(m, il, "ffn_up.weight"), xn, E, F, u);
            for (int i = 0; i < F; i++) g[i] = g[i] / (1 + exp(-g[i])) * u[i];
            mv(WL(m, il, "ffn_down.weight"), g, F, E, tmp);
            for (int i = 0; i < E; i++) x[i] += tmp[i];
        }
        rms(x, W(m, "output_norm.weight"), xn, E, eps);
        mv(W(m, "output.weight"), xn, E, V, logits + (size_t)t * V);
    }
    free(kpre); free(krot); free(vv); free(x); free(xn); free(q); free(att);
    free(tmp); free(g); free(u); free(sc); free(qa); free(ka);
}
