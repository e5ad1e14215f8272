/* batch_prompt.c - prompt builders (see batch_prompt.h). */
#include "tools/batch_prompt.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "base/kvt.h"

#define KEY_FMT " The pass key is %ld. Remember it. %ld is the pass key."

size_t passkey_prompt_bound(int n_reps)
{
    if (n_reps < 0) n_reps = 0;
    return sizeof PASSKEY_PREFIX + (size_t)n_reps * (sizeof PASSKEY_FILLER - 1) +
           sizeof KEY_FMT + 2 * 20 + sizeof PASSKEY_SUFFIX;
}

/* Append s[0..n) at *len; -ENOSPC if it (and a NUL) does not fit. */
static int add(char *buf, size_t cap, size_t *len, const char *s, size_t n)
{
    if (cap - *len < n + 1) return -ENOSPC;
    memcpy(buf + *len, s, n);
    *len += n;
    buf[*len] = 0;
    return 0;
}

int64_t passkey_prompt(char *buf, size_t cap, int n_reps, double depth, long key)
{
    if (n_reps < 0 || !(depth >= 0.0 && depth <= 1.0) || key < 0 || key > 99999999)
        return KVT_ERANGE;
    if (cap == 0) return -ENOSPC;
    int k = (int)floor(depth * n_reps);
    if (k > n_reps) k = n_reps;
    char line[160];
    int ln = snprintf(line, sizeof line, KEY_FMT, key, key);
    KVT_ASSERT(ln > 0 && (size_t)ln < sizeof line);
    size_t len = 0;
    buf[0] = 0;
    int rc = add(buf, cap, &len, PASSKEY_PREFIX, sizeof PASSKEY_PREFIX - 1);
    for (int i = 0; i <= n_reps && rc == 0; i++) {
        if (i == k) rc = add(buf, cap, &len, line, (size_t)ln);
        if (i < n_reps && rc == 0)
            rc = add(buf, cap, &len, PASSKEY_FILLER, sizeof PASSKEY_FILLER - 1);
    }
    if (rc == 0) rc = add(buf, cap, &len, PASSKEY_SUFFIX, sizeof PASSKEY_SUFFIX - 1);
    return rc < 0 ? rc : (int64_t)len;
}

long long first_int(const char *text, size_t len)
{
    size_t i = 0;
    while (i < len && !(text[i] >= '0' && text[i] <= '9')) i++;
    if (i == len) return -1;
    long long v = 0;
    for (int nd = 0; i < len && text[i] >= '0' && text[i] <= '9' && nd < 18; i++, nd++)
        v = v * 10 + (text[i] - '0');
    return v;
}

static const char DOC[] = "{doc}", QUESTION[] = "{question}";

size_t tmpl_render_bound(const char *tmpl, size_t doc_len, size_t q_len)
{
    size_t n = 1;
    for (const char *t = tmpl; *t;) {
        if (!strncmp(t, DOC, sizeof DOC - 1)) { n += doc_len; t += sizeof DOC - 1; }
        else if (!strncmp(t, QUESTION, sizeof QUESTION - 1)) { n += q_len; t += sizeof QUESTION - 1; }
        else { n++; t++; }
    }
    return n;
}

int64_t tmpl_render(const char *tmpl, const char *doc, size_t doc_len,
                    const char *q, size_t q_len, char *out, size_t cap,
                    size_t *doc_part)
{
    size_t len = 0;
    int seen_q = 0, rc = 0;
    if (cap == 0) return -ENOSPC;
    out[0] = 0;
    *doc_part = 0;
    for (const char *t = tmpl; *t && rc == 0;) {
        if (!strncmp(t, DOC, sizeof DOC - 1)) {
            rc = add(out, cap, &len, doc, doc_len);
            t += sizeof DOC - 1;
        } else if (!strncmp(t, QUESTION, sizeof QUESTION - 1)) {
            if (!seen_q) *doc_part = len;
            seen_q = 1;
            rc = add(out, cap, &len, q, q_len);
            t += sizeof QUESTION - 1;
        } else {
            rc = add(out, cap, &len, t, 1);
            t++;
        }
    }
    if (rc < 0) return rc;
    if (!seen_q) *doc_part = len;
    return (int64_t)len;
}
