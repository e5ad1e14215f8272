/* synth.c - synthetic K/V with per-channel structure (see synth.h). */
#include "tools/synth.h"

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "base/kvt.h"

struct synth {
    int n_layer, kv_dim;
    uint64_t *rng;              /* (n_layer) */
    float *off, *scale, *drift; /* (n_layer, 2 * kv_dim): K channels, then V */
};

uint64_t synth_rand(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *state = x;
}

float synth_noise(uint64_t r, int half)
{
    uint32_t a = (uint32_t)(r >> (32 * half)) & 0xffffu;
    uint32_t b = (uint32_t)(r >> (32 * half + 16)) & 0xffffu;
    return (float)((int)a + (int)b - 65536) * (1.0f / 65536.0f);
}

void synth_free(synth *g)
{
    if (!g) return;
    free(g->rng);
    free(g->off);
    free(g->scale);
    free(g->drift);
    free(g);
}

/* Offsets and scales of one layer's 2 * kv_dim channels, from its stream. */
static void synth_layer_init(synth *g, int layer, uint64_t seed)
{
    const int D = g->kv_dim;
    uint64_t *rng = &g->rng[layer];
    *rng = 0x9E3779B97F4A7C15ull * (uint64_t)(layer + 1) ^ seed;
    if (*rng == 0) *rng = 0x9E3779B97F4A7C15ull; /* xorshift's fixed point */
    size_t base = (size_t)layer * 2 * (size_t)D;
    for (int c = 0; c < 2 * D; c++) {
        uint64_t r = synth_rand(rng);
        float mag = c >= D ? 0.3f : (r % 29 == 0 ? 8.0f : 1.0f); /* outlier K */
        g->off[base + (size_t)c] = mag * 2.0f * synth_noise(r, 0);
        g->scale[base + (size_t)c] =
            mag * (0.1f + 0.4f * (float)((r >> 40) & 0xff) / 255.0f);
    }
}

int synth_create(int n_layer, int kv_dim, uint64_t seed, synth **out)
{
    *out = NULL;
    if (n_layer < 1 || kv_dim < 1) return -EINVAL;
    if ((size_t)n_layer > SIZE_MAX / sizeof(float) / 2 / (size_t)kv_dim) return -EINVAL;
    size_t n = (size_t)n_layer * 2 * (size_t)kv_dim;
    synth *g = calloc(1, sizeof *g);
    if (!g) return -ENOMEM;
    g->n_layer = n_layer;
    g->kv_dim = kv_dim;
    g->rng = malloc((size_t)n_layer * sizeof *g->rng);
    g->off = malloc(n * sizeof(float));
    g->scale = malloc(n * sizeof(float));
    g->drift = calloc(n, sizeof(float));
    if (!g->rng || !g->off || !g->scale || !g->drift) {
        synth_free(g);
        return -ENOMEM;
    }
    for (int L = 0; L < n_layer; L++) synth_layer_init(g, L, seed);
    *out = g;
    return 0;
}

void synth_next(synth *g, int layer, int n, float *k, float *v)
{
    KVT_ASSERT(layer >= 0);
    KVT_ASSERT(layer < g->n_layer);
    KVT_ASSERT(n >= 0);
    const int D = g->kv_dim;
    uint64_t *rng = &g->rng[layer];
    size_t base = (size_t)layer * 2 * (size_t)D;
    for (int t = 0; t < n; t++)
        for (int c = 0; c < 2 * D; c++) {
            uint64_t r = synth_rand(rng);
            size_t i = base + (size_t)c;
            float d = g->drift[i] = 0.97f * g->drift[i] + 0.25f * synth_noise(r, 0);
            float x = g->off[i] + g->scale[i] * (d + 0.05f * synth_noise(r, 1));
            if (c < D) k[(size_t)t * D + c] = x;
            else v[(size_t)t * D + (c - D)] = x;
        }
}
