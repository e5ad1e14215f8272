/* tok_special.c - special pieces inside text (see tok_special.h).
 *
 * One scan finds every occurrence of every piece: at each text position
 * whose byte starts some piece, the text is looked up (hash) at each
 * length a piece starting with that byte has. The occurrences are then
 * sorted by (piece priority, position) and claimed in that order on a
 * per-byte map; an occurrence touching claimed bytes is skipped. This is
 * the same as llama.cpp's piece-by-piece cutting of fragments, in time
 * linear in the text (plus the occurrences) instead of pieces x text.
 */
#include "engine/tok_special.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "base/kvt.h"

struct toksp {
    int n;
    int32_t *id;       /* (n) priority order */
    uint8_t *flags;    /* (n) */
    char **text;       /* (n) */
    uint32_t *len;     /* (n) */
    int32_t *slot;     /* (mask + 1) hash of texts: 0 or index + 1 */
    size_t mask;
    uint32_t lens_off[257]; /* lens[lens_off[b] .. lens_off[b+1]): the */
    uint32_t *lens;         /* distinct lengths of pieces starting with b */
    unsigned classes;  /* union of the pieces' classes */
};

typedef struct toksp_order {
    uint32_t len;
    int32_t id;
    int i;
} toksp_order;

static int toksp_cmp_order(const void *a, const void *b)
{
    const toksp_order *x = a, *y = b;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

void toksp_free(toksp *sp)
{
    if (!sp) return;
    for (int i = 0; sp->text && i < sp->n; i++) free(sp->text[i]);
    free(sp->text);
    free(sp->id);
    free(sp->flags);
    free(sp->len);
    free(sp->slot);
    free(sp->lens);
    free(sp);
}

static size_t toksp_hash(const char *s, size_t n, size_t mask)
{
    return (size_t)XXH3_64bits(s, n) & mask;
}

/* Index of the highest-priority piece with text S[0..n), or -1. */
static int toksp_find(const toksp *sp, const char *s, size_t n)
{
    for (size_t h = toksp_hash(s, n, sp->mask);; h = (h + 1) & sp->mask) {
        int32_t v = sp->slot[h];
        if (v == 0) return -1;
        if (sp->len[v - 1] == n && memcmp(sp->text[v - 1], s, n) == 0)
            return v - 1;
    }
}

static int toksp_index(toksp *sp)
{
    size_t cap = 16;
    while (cap < 2 * (size_t)sp->n) cap *= 2;
    sp->slot = calloc(cap, sizeof *sp->slot);
    if (!sp->slot) return -ENOMEM;
    sp->mask = cap - 1;
    for (int i = 0; i < sp->n; i++) /* priority order: the first one wins */
        if (toksp_find(sp, sp->text[i], sp->len[i]) < 0) {
            size_t h = toksp_hash(sp->text[i], sp->len[i], sp->mask);
            while (sp->slot[h]) h = (h + 1) & sp->mask;
            sp->slot[h] = i + 1;
        }
    /* distinct lengths per first byte */
    sp->lens = malloc(sizeof *sp->lens * (size_t)(sp->n ? sp->n : 1));
    if (!sp->lens) return -ENOMEM;
    uint32_t k = 0;
    for (int b = 0; b < 256; b++) {
        sp->lens_off[b] = k;
        for (int i = 0; i < sp->n; i++) {
            if ((unsigned char)sp->text[i][0] != b) continue;
            int seen = 0;
            for (uint32_t j = sp->lens_off[b]; j < k && !seen; j++)
                seen = sp->lens[j] == sp->len[i];
            if (!seen) sp->lens[k++] = sp->len[i];
        }
    }
    sp->lens_off[256] = k;
    return 0;
}

int toksp_build(int n, const int32_t *id, const char *const *text,
                const uint32_t *len, const uint8_t *flags, toksp **out)
{
    *out = NULL;
    toksp *sp = calloc(1, sizeof *sp);
    toksp_order *ord = malloc(sizeof *ord * (size_t)(n ? n : 1));
    size_t m = (size_t)(n ? n : 1);
    if (sp) {
        sp->id = malloc(sizeof *sp->id * m);
        sp->flags = malloc(m);
        sp->text = calloc(m, sizeof *sp->text);
        sp->len = malloc(sizeof *sp->len * m);
    }
    if (!sp || !ord || !sp->id || !sp->flags || !sp->text || !sp->len) {
        free(ord);
        toksp_free(sp);
        return -ENOMEM;
    }
    for (int i = 0; i < n; i++)
        ord[i] = (toksp_order){.len = len[i], .id = id[i], .i = i};
    qsort(ord, (size_t)n, sizeof *ord, toksp_cmp_order);
    sp->n = n;
    for (int j = 0; j < n; j++) {
        int i = ord[j].i;
        KVT_ASSERT(len[i] > 0);
        sp->id[j] = id[i];
        sp->flags[j] = flags[i];
        sp->len[j] = len[i];
        sp->classes |= flags[i] & (TOKSP_USER | TOKSP_CONTROL);
        sp->text[j] = malloc(len[i]);
        if (!sp->text[j]) break;
        memcpy(sp->text[j], text[i], len[i]);
    }
    free(ord);
    if ((n > 0 && !sp->text[n - 1]) || toksp_index(sp) < 0) {
        toksp_free(sp);
        return -ENOMEM;
    }
    *out = sp;
    return 0;
}

int toksp_any(const toksp *sp, unsigned classes)
{
    return (sp->classes & classes) != 0;
}

typedef struct toksp_hit {
    int32_t i;   /* piece index (priority) */
    size_t pos;
} toksp_hit;

static int toksp_cmp_hit(const void *a, const void *b)
{
    const toksp_hit *x = a, *y = b;
    if (x->i != y->i) return x->i < y->i ? -1 : 1;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

static int toksp_push(void **v, size_t *cap, size_t n, size_t elem)
{
    if (n < *cap) return 0;
    size_t c = *cap ? 2 * *cap : 64;
    void *p = realloc(*v, c * elem);
    if (!p) return -ENOMEM;
    *v = p;
    *cap = c;
    return 0;
}

/* Every occurrence of a piece of CLASSES in TEXT. */
static int toksp_scan(const toksp *sp, const char *text, size_t len,
                      unsigned classes, toksp_hit **hits, size_t *n_hits)
{
    size_t n = 0, cap = 0;
    toksp_hit *h = NULL;
    for (size_t p = 0; p < len; p++) {
        unsigned b = (unsigned char)text[p];
        for (uint32_t j = sp->lens_off[b]; j < sp->lens_off[b + 1]; j++) {
            size_t k = sp->lens[j];
            if (k > len - p) continue;
            int i = toksp_find(sp, text + p, k);
            if (i < 0 || !(sp->flags[i] & classes)) continue;
            if (toksp_push((void **)&h, &cap, n, sizeof *h) < 0) {
                free(h);
                return -ENOMEM;
            }
            h[n++] = (toksp_hit){.i = i, .pos = p};
        }
    }
    *hits = h;
    *n_hits = n;
    return 0;
}

enum { FREE = 0, TAKEN = 1, DROPPED = 2 };

/* Claim the occurrences in priority order; mark stripped whitespace. */
static void toksp_claim(const toksp *sp, const char *text, size_t len,
                        toksp_hit *h, size_t n, uint8_t *map)
{
    for (size_t j = 0; j < n; j++) {
        size_t a = h[j].pos, k = sp->len[h[j].i], e = a + k;
        int ok = 1;
        for (size_t q = a; q < e && ok; q++) ok = map[q] == FREE;
        if (!ok) {
            h[j].i = -1;
            continue;
        }
        memset(map + a, TAKEN, k);
        if (sp->flags[h[j].i] & TOKSP_LSTRIP)
            for (size_t q = a; q > 0 && map[q - 1] == FREE &&
                               isspace((unsigned char)text[q - 1]); q--)
                map[q - 1] = DROPPED;
        if (sp->flags[h[j].i] & TOKSP_RSTRIP)
            for (size_t q = e; q < len && map[q] == FREE &&
                               isspace((unsigned char)text[q]); q++)
                map[q] = DROPPED;
    }
}

static int toksp_cmp_pos(const void *a, const void *b)
{
    const toksp_hit *x = a, *y = b;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

int toksp_partition(const toksp *sp, const char *text, size_t len,
                    unsigned classes, toksp_frag **frags, size_t *n_frags)
{
    toksp_hit *h = NULL;
    size_t nh = 0;
    *frags = NULL;
    *n_frags = 0;
    int rc = 0;
    if (toksp_any(sp, classes) && len > 0)
        rc = toksp_scan(sp, text, len, classes, &h, &nh);
    if (rc < 0) return rc;
    uint8_t *map = NULL;
    if (nh > 0) {
        map = calloc(len, 1);
        if (!map) {
            free(h);
            return -ENOMEM;
        }
        qsort(h, nh, sizeof *h, toksp_cmp_hit);
        toksp_claim(sp, text, len, h, nh, map);
        size_t m = 0;
        for (size_t j = 0; j < nh; j++) /* the taken ones, by position */
            if (h[j].i >= 0) h[m++] = h[j];
        nh = m;
        qsort(h, nh, sizeof *h, toksp_cmp_pos);
    }
    toksp_frag *f = malloc(sizeof *f * (2 * nh + 1));
    if (!f) {
        free(h);
        free(map);
        return -ENOMEM;
    }
    size_t nf = 0, p = 0;
    for (size_t j = 0; j <= nh; j++) {
        size_t end = j < nh ? h[j].pos : len;
        while (p < end) { /* raw text runs between dropped bytes */
            while (p < end && map && map[p] == DROPPED) p++;
            size_t s = p;
            while (p < end && !(map && map[p] == DROPPED)) p++;
            if (p > s) f[nf++] = (toksp_frag){.off = s, .len = p - s, .id = -1};
        }
        if (j < nh) {
            size_t k = sp->len[h[j].i];
            f[nf++] = (toksp_frag){.off = h[j].pos, .len = k,
                                   .id = sp->id[h[j].i]};
            p = h[j].pos + k;
        }
    }
    free(h);
    free(map);
    *frags = f;
    *n_frags = nf;
    return 0;
}
