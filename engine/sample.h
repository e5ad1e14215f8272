/* sample.h - the sampler: the next token from a row of logits.
 *
 * Greedy (temp <= 0): the most likely token, the lowest id on ties.
 * Otherwise: p_i = exp((logit_i - max) / temp) (as floats), sorted by p
 * descending (ties: lower id first); the nucleus is the shortest prefix of
 * that order whose mass sum(p) / total reaches top_p (at least one token);
 * a draw u in [0, 1) from the generator picks the first token of the
 * nucleus whose running sum exceeds u * nucleus mass.
 *
 * Generator: xorshift64* with the state set by sampler_seed:
 *   state = (seed ^ (stream * 0xD1B54A32D192ED03)) * 0x9E3779B97F4A7C15 + 1
 * STREAM separates independent sequences drawn from one seed (`kvtile
 * batch` uses the document index; `kvtile generate` uses stream 0), so a
 * sequence's samples depend only on (seed, stream) and its logits.
 *
 * The sampler owns one candidate buffer of n_vocab entries, allocated in
 * sampler_create; sampler_next allocates nothing.
 */
#ifndef KVT_SAMPLE_H
#define KVT_SAMPLE_H

#include <stdint.h>

struct sample_params {
    double temp;     /* >= 0; 0: greedy (the generator is not used) */
    double top_p;    /* (0, 1]: nucleus mass */
    uint64_t seed;   /* generator seed */
    uint64_t stream; /* independent stream of that seed (0: the default) */
};

/* temp 0 (greedy), top_p 0.95, seed 42, stream 0: the CLI defaults. */
void sample_params_default(struct sample_params *p);

typedef struct sampler sampler;

/* A sampler over N_VOCAB tokens with parameters P (seeded from P).
 * @return 0, -EINVAL (n_vocab < 1, P out of range: temp < 0 or not
 * finite, top_p outside (0, 1]), or -ENOMEM. */
int sampler_create(int n_vocab, const struct sample_params *p, sampler **out);
void sampler_free(sampler *s); /* NULL is a no-op */

/* New parameters, and the generator restarted from (p->seed, p->stream).
 * @return 0 or -EINVAL (as sampler_create; S is unchanged then). */
int sampler_set(sampler *s, const struct sample_params *p);

/* The next token for LOGITS (n_vocab floats): an id in [0, n_vocab).
 * Advances the generator by one draw unless greedy. */
int sampler_next(sampler *s, const float *logits);

/* The greedy choice alone: argmax of logits[0..n), lowest id on ties. */
int sample_greedy(const float *logits, int n);

#endif
