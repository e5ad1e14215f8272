/* select.c - query-aware tile selection (see select.h). */
#include "select.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/kvt.h"

static int parse_tokens(const char *s, const char *end, int64_t *out)
{
    char *e;
    double v = strtod(s, &e);
    if (e == s) return KVT_ERANGE;
    if (e < end && (*e == 'k' || *e == 'K')) { v *= 1024; e++; }
    else if (e < end && (*e == 'm' || *e == 'M')) { v *= 1024 * 1024; e++; }
    if (e != end || !(v >= 0) || v > 1e15 || v != floor(v)) return KVT_ERANGE;
    *out = (int64_t)v;
    return 0;
}

int sel_parse(const char *spec, struct sel_policy *out)
{
    memset(out, 0, sizeof *out);
    if (!strcmp(spec, "all")) return 0;
    int have_top = 0;
    const char *p = spec;
    while (*p) {
        const char *end = strchr(p, ',');
        if (!end) end = p + strlen(p);
        const char *colon = memchr(p, ':', (size_t)(end - p));
        if (!colon) return KVT_ERANGE;
        size_t klen = (size_t)(colon - p);
        const char *v = colon + 1;
        int rc;
        if (klen == 4 && !memcmp(p, "sink", 4)) {
            rc = parse_tokens(v, end, &out->sink);
        } else if (klen == 6 && !memcmp(p, "recent", 6)) {
            rc = parse_tokens(v, end, &out->recent);
        } else if (klen == 3 && !memcmp(p, "top", 3)) {
            if (end > v && end[-1] == '%') {
                char *e;
                double f = strtod(v, &e);
                rc = e == end - 1 && f > 0 && f <= 100 ? 0 : KVT_ERANGE;
                out->top_frac = f / 100.0;
            } else {
                rc = parse_tokens(v, end, &out->top);
            }
            have_top = 1;
        } else {
            return KVT_ERANGE;
        }
        if (rc < 0) return rc;
        p = *end ? end + 1 : end;
    }
    if (!have_top) return KVT_ERANGE;
    out->on = 1;
    return 0;
}

void sel_format(const struct sel_policy *p, char *buf, size_t cap)
{
    if (!p->on) {
        snprintf(buf, cap, "all");
    } else if (p->top_frac > 0) {
        snprintf(buf, cap, "sink:%lld,recent:%lld,top:%g%%", (long long)p->sink,
                 (long long)p->recent, p->top_frac * 100.0);
    } else {
        snprintf(buf, cap, "sink:%lld,recent:%lld,top:%lld", (long long)p->sink,
                 (long long)p->recent, (long long)p->top);
    }
}

int64_t sel_top_count(const struct sel_policy *p, int64_t n_full)
{
    if (p->top_frac > 0) {
        double k = ceil(p->top_frac * (double)n_full - 1e-9);
        return KVT_MIN(n_full, (int64_t)k);
    }
    return KVT_MIN(n_full, p->top);
}

void sel_weights(const float *q, int rows, const struct tile_pairing *pr,
                 int n_rot, float mscale, float *w)
{
    int hd = pr->head_dim, half = hd / 2;
    for (int r = 0; r < rows; r++) {
        const float *x = q + (size_t)r * hd;
        for (int p = 0; p < half; p++) {
            int c0, c1;
            tile_pair_channels(pr, p, &c0, &c1);
            double nrm = sqrt((double)x[c0] * x[c0] + (double)x[c1] * x[c1]);
            w[(size_t)r * half + p] = (float)(nrm * (c0 < n_rot ? mscale : 1.0f));
        }
    }
}

float sel_bound(const float *w, int rows, int half, const float *sum)
{
    if (!sum) return INFINITY;
    float best = 0.0f;
    for (int r = 0; r < rows; r++) {
        const float *wr = w + (size_t)r * half;
        float b = 0.0f;
        for (int p = 0; p < half; p++) b += wr[p] * sum[p];
        best = b > best ? b : best;
    }
    return best;
}

/* The k-th largest (k >= 1, 0-based rank k-1) of x[0..n) (reordered). */
static float kth_largest(float *x, int64_t n, int64_t k)
{
    int64_t lo = 0, hi = n - 1, want = k - 1;
    while (lo < hi) {
        float pivot = x[lo + (hi - lo) / 2];
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (x[i] > pivot) i++;
            while (x[j] < pivot) j--;
            if (i <= j) {
                float t = x[i]; x[i] = x[j]; x[j] = t;
                i++; j--;
            }
        }
        if (want <= j) hi = j;
        else if (want >= i) lo = i;
        else return x[want];
    }
    return x[lo];
}

int64_t sel_choose(const struct sel_policy *p, const float *bound, int64_t n_full,
                   int T, int64_t n_tokens, uint8_t *chosen, int stride,
                   float *scratch)
{
    int64_t sink_end = KVT_MIN(n_full, (p->sink + T - 1) / T);
    int64_t recent_from = p->recent > 0 ? KVT_MAX((int64_t)0, (n_tokens - p->recent) / T)
                                        : n_full;
    int64_t n = 0, m = 0;
    for (int64_t t = 0; t < n_full; t++) {
        int forced = t < sink_end || t >= recent_from;
        chosen[t * stride] = (uint8_t)forced;
        n += forced;
        if (!forced) scratch[m++] = bound[t];
    }
    int64_t k = KVT_MIN(sel_top_count(p, n_full), m);
    if (k <= 0) return n;
    float thr = kth_largest(scratch, m, k);
    int64_t above = 0;
    for (int64_t t = 0; t < n_full; t++)
        above += !chosen[t * stride] && bound[t] > thr;
    int64_t ties = k - above; /* tiles at the threshold still to take */
    for (int64_t t = 0; t < n_full; t++) {
        if (chosen[t * stride]) continue;
        if (bound[t] > thr || (bound[t] == thr && ties-- > 0)) {
            chosen[t * stride] = 1;
            n++;
        }
    }
    return n;
}
