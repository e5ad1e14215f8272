/* synth.h - synthetic K/V with the structure of real caches, for benches
 * and tests that need data codecs and the I/O path treat like the real
 * thing.
 *
 * Per layer and per channel (kv_dim K channels, then kv_dim V channels):
 *   an offset and a scale drawn once at create time (V channels 0.3x the
 *   magnitude of K; about one K channel in 29 an outlier 8x larger, as
 *   real K has), and a drift d that follows an AR(1) process across tokens
 *   (d = 0.97 d + 0.25 noise). A value is off + scale * (d + 0.05 noise).
 *   noise = the sum of two uniforms in [-0.5, 0.5): roughly normal,
 *   variance 1/6 (synth_noise).
 *
 * Deterministic: the same (seed, n_layer, kv_dim) and the same sequence of
 * synth_next calls give the same floats, on every machine (integer PRNG,
 * float arithmetic in a fixed order). Layers are independent streams.
 *
 *   synth *g;
 *   synth_create(n_layer, kv_dim, SYNTH_SEED_DEFAULT, &g);
 *   synth_next(g, layer, n, k, v);     k, v: caller-owned (n, kv_dim)
 *   synth_free(g);
 *
 * All memory is allocated by synth_create; synth_next allocates nothing.
 * Not thread-safe per handle.
 */
#ifndef KVT_SYNTH_H
#define KVT_SYNTH_H

#include <stdint.h>

/* The seed kvtile iobench and bench_decode2m have always used. */
#define SYNTH_SEED_DEFAULT 0xD1B54A32D192ED03ull

typedef struct synth synth;

/* n_layer >= 1, kv_dim >= 1. @return 0 and *out, -EINVAL for a bad shape,
 * -ENOMEM. */
int synth_create(int n_layer, int kv_dim, uint64_t seed, synth **out);
void synth_free(synth *g); /* NULL is a no-op */

/* The next n tokens of LAYER: k, v (n, kv_dim) each, token-major.
 * 0 <= layer < n_layer, n >= 0 (asserted). */
void synth_next(synth *g, int layer, int n, float *k, float *v);

/* The PRNG under it, for callers that want more noise of the same kind:
 * xorshift64 (state != 0). @return the next state, also stored in *state. */
uint64_t synth_rand(uint64_t *state);
/* Noise from half HALF (0 or 1) of a random word R: the sum of two
 * uniforms in [-0.5, 0.5), roughly normal with variance 1/6. */
float synth_noise(uint64_t r, int half);

#endif
