/* sample.c - the sampler (sample.h). */
#include "sample.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>

struct cand {
    float p;
    int id;
};

struct sampler {
    struct sample_params p;
    uint64_t state;     /* xorshift64* */
    int n_vocab;
    struct cand *cands; /* (n_vocab) */
};

void sample_params_default(struct sample_params *p)
{
    *p = (struct sample_params){ .temp = 0.0, .top_p = 0.95, .seed = 42, .stream = 0 };
}

static int params_ok(const struct sample_params *p)
{
    return isfinite(p->temp) && p->temp >= 0 && p->top_p > 0 && p->top_p <= 1;
}

/* xorshift64*: a uniform double in [0, 1) from the top 53 bits. */
static double rng_uniform(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return (double)((*s * 0x2545F4914F6CDD1DULL) >> 11) * (1.0 / 9007199254740992.0);
}

int sampler_create(int n_vocab, const struct sample_params *p, sampler **out)
{
    *out = NULL;
    if (n_vocab < 1 || !params_ok(p)) return -EINVAL;
    sampler *s = calloc(1, sizeof *s);
    if (!s) return -ENOMEM;
    s->cands = malloc((size_t)n_vocab * sizeof *s->cands);
    if (!s->cands) {
        free(s);
        return -ENOMEM;
    }
    s->n_vocab = n_vocab;
    sampler_set(s, p);
    *out = s;
    return 0;
}

void sampler_free(sampler *s)
{
    if (!s) return;
    free(s->cands);
    free(s);
}

int sampler_set(sampler *s, const struct sample_params *p)
{
    if (!params_ok(p)) return -EINVAL;
    s->p = *p;
    s->state = (p->seed ^ (p->stream * 0xD1B54A32D192ED03ULL)) * 0x9E3779B97F4A7C15ULL + 1;
    return 0;
}

int sample_greedy(const float *logits, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (logits[i] > logits[best]) best = i;
    return best;
}

static int cand_cmp(const void *a, const void *b)
{
    const struct cand *x = a, *y = b;
    if (x->p != y->p) return x->p < y->p ? 1 : -1;
    return x->id - y->id;
}

int sampler_next(sampler *s, const float *logits)
{
    int V = s->n_vocab, best = sample_greedy(logits, V);
    if (s->p.temp <= 0) return best;
    struct cand *c = s->cands;
    double sum = 0;
    for (int i = 0; i < V; i++) {
        c[i].id = i;
        c[i].p = (float)exp((logits[i] - logits[best]) / s->p.temp);
        sum += c[i].p;
    }
    qsort(c, (size_t)V, sizeof *c, cand_cmp);
    double mass = 0;
    int k = 0;
    while (k < V) {
        mass += c[k].p / sum;
        k++;
        if (mass >= s->p.top_p) break;
    }
    double r = rng_uniform(&s->state) * mass * sum, acc = 0;
    for (int i = 0; i < k; i++) {
        acc += c[i].p;
        if (r < acc) return c[i].id;
    }
    return c[k - 1].id;
}
