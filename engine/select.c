/* select.c - query-aware tile selection (see select.h). */
#include "select.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/kvt.h"

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
        if (*end == ',' && end[1] == 0) return KVT_ERANGE; /* "top:2," */
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

/* Tile a ranks below tile b: a lower bound, or the same and later. */
static int worse(const float *b, int64_t x, int64_t y)
{
    return b[x] < b[y] || (b[x] == b[y] && x > y);
}

static void sift_down(const float *b, int64_t *h, int64_t n, int64_t i)
{
    for (;;) {
        int64_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && worse(b, h[l], h[m])) m = l;
        if (r < n && worse(b, h[r], h[m])) m = r;
        if (m == i) return;
        int64_t t = h[i]; h[i] = h[m]; h[m] = t;
        i = m;
    }
}

/* The k best tiles of one head among those not chosen[], best first, into
 * out (a heap of the k best so far, the worst at its root, then sorted).
 * @return how many (< k if fewer candidates). */
static int64_t head_ranking(const float *b, const uint8_t *chosen, int64_t n_full,
                            int64_t k, int64_t *out)
{
    int64_t n = 0;
    for (int64_t t = 0; t < n_full; t++) {
        if (chosen[t]) continue;
        if (n < k) {
            out[n++] = t;
            for (int64_t i = n / 2 - 1; n == k && i >= 0; i--) sift_down(b, out, n, i);
        } else if (worse(b, out[0], t)) {
            out[0] = t;
            sift_down(b, out, n, 0);
        }
    }
    if (n < k) /* never became a heap */
        for (int64_t i = n / 2 - 1; i >= 0; i--) sift_down(b, out, n, i);
    for (int64_t m = n; m > 1; m--) { /* worst to the back: best first */
        int64_t t = out[0]; out[0] = out[m - 1]; out[m - 1] = t;
        sift_down(b, out, m - 1, 0);
    }
    return n;
}

int64_t sel_choose(const struct sel_policy *p, const float *bound, int n_heads,
                   size_t ld, int64_t n_full, int T, int64_t n_tokens,
                   uint8_t *chosen, int64_t *rank)
{
    int64_t sink_end = KVT_MIN(n_full, (p->sink + T - 1) / T);
    int64_t recent_from = p->recent > 0 ? KVT_MAX((int64_t)0, (n_tokens - p->recent) / T)
                                        : n_full;
    int64_t n = 0;
    for (int64_t t = 0; t < n_full; t++) {
        chosen[t] = (uint8_t)(t < sink_end || t >= recent_from);
        n += chosen[t];
    }
    int64_t k = KVT_MIN(sel_top_count(p, n_full), n_full - n);
    if (k <= 0) return n;
    int64_t got = 0, len = 0;
    for (int h = 0; h < n_heads; h++)
        len = KVT_MAX(len, head_ranking(bound + (size_t)h * ld, chosen, n_full, k,
                                        rank + (size_t)h * (size_t)k));
    /* all rankings drawn against the same forced set, so each has the same
     * length: min(k, candidates) */
    for (int64_t r = 0; r < len && got < k; r++)
        for (int h = 0; h < n_heads && got < k; h++) {
            int64_t t = rank[(size_t)h * (size_t)k + (size_t)r];
            if (!chosen[t]) {
                chosen[t] = 1;
                got++;
            }
        }
    return n + got;
}
