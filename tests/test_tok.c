/* test_tok.c - tokenizers against llama.cpp's test vectors and reference
 * token counts, round trips, and invalid input. */
#include "engine/tok.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/gguf_write.h"
#include "base/kvt.h"
#include "tests/t.h"
#include "tests/tproc.h"


typedef struct fixture {
    gguf *g;
    tok *t;
} fixture;

static int fx_open(fixture *fx, const char *path)
{
    char err[256];
    fx->g = NULL;
    fx->t = NULL;
    int rc = gguf_open(path, &fx->g, err, sizeof err);
    if (rc < 0) {
        fprintf(stderr, "  %s: %s\n", path, err);
        return rc;
    }
    rc = tok_open(fx->g, &fx->t, err, sizeof err);
    if (rc < 0) fprintf(stderr, "  %s: tok_open: %s\n", path, err);
    return rc;
}

static void fx_close(fixture *fx)
{
    tok_free(fx->t);
    gguf_close(fx->g);
}

/* Run every vector of INP_PATH / OUT_PATH through the tokenizer of
 * GGUF_PATH; return how many matched, and count the vectors in *n_total. */
static int run_vectors_at(const char *gguf_path, const char *inp_path,
                          const char *out_path, const char *name, int *n_total)
{
    fixture fx;
    *n_total = 0;
    if (fx_open(&fx, gguf_path) < 0) {
        fx_close(&fx);
        return -1;
    }
    size_t ilen, olen;
    char *inp = t_slurp(inp_path, &ilen);
    char *out = t_slurp(out_path, &olen);
    T_CHECK(inp != NULL && out != NULL);
    if (!inp || !out) {
        free(inp);
        free(out);
        fx_close(&fx);
        return -1;
    }
    static const char sep[] = "\n__ggml_vocab_test__\n";
    int ok = 0;
    char *ip = inp, *op = out;
    int32_t *ids = malloc(sizeof *ids * tok_encode_bound(ilen));
    for (;;) {
        char *e = strstr(ip, sep);
        if (!e) break; /* the text after the last separator is empty */
        char *oe = strchr(op, '\n');
        T_CHECK(oe != NULL);
        if (!oe) break;
        *oe = '\0';
        (*n_total)++;
        int64_t n = tok_encode(fx.t, ip, (size_t)(e - ip), 0, ids,
                               tok_encode_bound((size_t)(e - ip)));
        /* expected ids */
        int match = n >= 0;
        int64_t k = 0;
        char *q = op;
        for (;;) {
            char *end;
            long v = strtol(q, &end, 10);
            if (end == q) break;
            if (match && (k >= n || ids[k] != v)) match = 0;
            k++;
            q = end;
        }
        if (k != n) match = 0;
        if (match) ok++;
        else {
            fprintf(stderr, "  %s: vector %d '%.*s': expected [%s], got",
                    name, *n_total, (int)(e - ip), ip, op);
            for (int64_t i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
            fprintf(stderr, "\n");
        }
        ip = e + sizeof sep - 1;
        op = oe + 1;
    }
    free(ids);
    free(inp);
    free(out);
    fx_close(&fx);
    return ok;
}

/* Every vector of tests/data/vocab/NAME.{inp,out}. */
static int run_vectors(const char *name, int *n_total)
{
    char g[256], i[256], o[256];
    snprintf(g, sizeof g, "tests/data/vocab/%s", name);
    snprintf(i, sizeof i, "tests/data/vocab/%s.inp", name);
    snprintf(o, sizeof o, "tests/data/vocab/%s.out", name);
    return run_vectors_at(g, i, o, name, n_total);
}

static void check_vectors(const char *name)
{
    int total;
    int ok = run_vectors(name, &total);
    fprintf(stderr, "  %s: %d/%d vectors match\n", name, ok, total);
    T_CHECK(total == 46);
    T_CHECK(ok == total);
}

static void test_vectors_llama_spm(void) { check_vectors("ggml-vocab-llama-spm.gguf"); }
static void test_vectors_phi3(void) { check_vectors("ggml-vocab-phi-3.gguf"); }
static void test_vectors_gpt2(void) { check_vectors("ggml-vocab-gpt-2.gguf"); }
static void test_vectors_llama_bpe(void) { check_vectors("ggml-vocab-llama-bpe.gguf"); }
static void test_vectors_deepseek_llm(void) { check_vectors("ggml-vocab-deepseek-llm.gguf"); }
static void test_vectors_deepseek_coder(void) { check_vectors("ggml-vocab-deepseek-coder.gguf"); }

/* The Llama 3 vocabulary relabelled with other tokenizer.ggml.pre names
 * against llama.cpp's ids for the same files (tests/data/vocab/README.md). */
static void test_pretok_names_vs_llama_cpp(void)
{
    static const char *const names[] = {
        "default", "gpt-2", "llama-bpe", "dbrx", "chatglm-bpe", "qwen2",
        "deepseek-llm", "deepseek-coder", "deepseek-v3", "falcon", "starcoder",
        "bloom", "viking", "tekken", "chameleon",
    };
    char dir[64];
    T_CHECK(t_tmpdir(dir, sizeof dir) != NULL);
    char err[256];
    gguf *src;
    T_CHECK(gguf_open("tests/data/vocab/ggml-vocab-llama-bpe.gguf", &src, err, sizeof err) == 0);
    for (size_t k = 0; k < sizeof names / sizeof *names; k++) {
        char path[256], out[256], bos[256];
        snprintf(path, sizeof path, "%s/%s.gguf", dir, names[k]);
        gguf_w *w;
        T_CHECK(gguf_w_init(&w) == 0);
        T_CHECK(gguf_w_copy_from(w, src) == 0);
        T_CHECK(gguf_w_set_str(w, "tokenizer.ggml.pre", names[k]) == 0);
        T_CHECK(gguf_w_write(w, path) == 0);
        gguf_w_free(w);
        snprintf(out, sizeof out, "tests/data/vocab/pretok/%s.out", names[k]);
        int total, ok = run_vectors_at(path, "tests/data/vocab/pretok/pretok.inp", out,
                                       names[k], &total);
        fprintf(stderr, "  pre-tokenizer %s: %d/%d as llama.cpp\n", names[k], ok, total);
        T_CHECK(total == 49 && ok == total);
        /* BOS by default (the file has no add_bos_token key) as llama.cpp */
        snprintf(bos, sizeof bos, "tests/data/vocab/pretok/%s.bos", names[k]);
        char *b = t_slurp(bos, NULL);
        fixture fx;
        T_CHECK(b != NULL && fx_open(&fx, path) == 0);
        if (b && fx.t) T_CHECK(tok_add_bos(fx.t) == (strstr(b, "128000") != NULL));
        fx_close(&fx);
        free(b);
        unlink(path);
    }
    gguf_close(src);
    rmdir(dir);
}


/* ---- naive SPM oracle: O(n^2) scans, sorted-array piece lookup ---------- */

typedef struct oracle {
    int n;
    const char **piece; /* sorted by string */
    int *id;
    float *score;       /* by id */
    int byte_id[256];
} oracle;

static const char **g_sort_pieces;
static int cmp_idx(const void *a, const void *b)
{
    return strcmp(g_sort_pieces[*(const int *)a], g_sort_pieces[*(const int *)b]);
}

static void oracle_init(oracle *o, const gguf *g, const tok *t)
{
    o->n = tok_n_vocab(t);
    const char **by_id = malloc(sizeof *by_id * (size_t)o->n);
    o->id = malloc(sizeof *o->id * (size_t)o->n);
    o->piece = malloc(sizeof *o->piece * (size_t)o->n);
    o->score = malloc(sizeof *o->score * (size_t)o->n);
    for (int i = 0; i < o->n; i++) {
        double d = 0;
        by_id[i] = tok_piece(t, i);
        o->id[i] = i;
        gguf_arr_float(g, "tokenizer.ggml.scores", (uint64_t)i, &d);
        o->score[i] = (float)d;
    }
    g_sort_pieces = by_id;
    qsort(o->id, (size_t)o->n, sizeof *o->id, cmp_idx);
    for (int i = 0; i < o->n; i++) o->piece[i] = by_id[o->id[i]];
    free(by_id);
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        o->byte_id[b] = -1;
        for (int i = 0; i < o->n; i++)
            if (strcmp(o->piece[i], name) == 0) o->byte_id[b] = o->id[i];
    }
}

static void oracle_free(oracle *o)
{
    free(o->piece);
    free(o->id);
    free(o->score);
}

static int oracle_find(const oracle *o, const char *s, size_t n)
{
    char buf[256];
    if (n >= sizeof buf) return -1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    int lo = 0, hi = o->n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2, c = strcmp(o->piece[mid], buf);
        if (c == 0) return o->id[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

/* Tokenize like SentencePiece BPE: dummy prefix, spaces -> U+2581, merge
 * the best-scoring adjacent pair (left-most on ties) until none is a
 * piece, then pieces or byte tokens. */
static int oracle_encode(const oracle *o, const char *text, int32_t *ids)
{
    char buf[2048];
    size_t m = 0;
    const char *p = " ";
    for (int pass = 0; pass < 2; pass++, p = text)
        for (; *p; p++) {
            if (*p == ' ') { memcpy(buf + m, "\xe2\x96\x81", 3); m += 3; }
            else buf[m++] = *p;
        }
    size_t off[2048], len[2048], n = 0;
    for (size_t i = 0; i < m;) {
        unsigned char c = (unsigned char)buf[i];
        size_t k = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
        off[n] = i;
        len[n++] = k;
        i += k;
    }
    for (;;) {
        int best = -1;
        float best_score = 0;
        for (size_t i = 0; i + 1 < n; i++) {
            int id = oracle_find(o, buf + off[i], len[i] + len[i + 1]);
            if (id >= 0 && (best < 0 || o->score[id] > best_score)) {
                best = (int)i;
                best_score = o->score[id];
            }
        }
        if (best < 0) break;
        len[best] += len[best + 1];
        memmove(off + best + 1, off + best + 2, (n - best - 2) * sizeof *off);
        memmove(len + best + 1, len + best + 2, (n - best - 2) * sizeof *len);
        n--;
    }
    int k = 0;
    for (size_t i = 0; i < n; i++) {
        int id = oracle_find(o, buf + off[i], len[i]);
        if (id >= 0) ids[k++] = id;
        else
            for (size_t j = 0; j < len[i]; j++)
                ids[k++] = o->byte_id[(unsigned char)buf[off[i] + j]];
    }
    return k;
}

/* Random KJV-like texts (words, runs of spaces, newlines, punctuation,
 * non-ASCII) against the oracle; seeded, prints the seed on failure. */
static void test_spm_oracle(void)
{
    static const char *const frags[] = {
        "the", " ", "  ", "\n", "\n\n", "LORD", "and", "begat", ",", ".",
        ";", ":", "'", "?", "1", "23", "Jesus", "th", "e", "s", "\xc3\xa9",
        "\xe2\x80\x94", "\t", "ye", "unto", "(", ")", "Amen", "x", "q",
        "\xf0\x9f\x98\x80",
    };
    const int nf = (int)(sizeof frags / sizeof *frags);
    fixture fx;
    if (fx_open(&fx, "models/tiny-kjv-f32.gguf") < 0) {
        T_CHECK(0);
        fx_close(&fx);
        return;
    }
    oracle o;
    oracle_init(&o, fx.g, fx.t);
    uint64_t seed = 12345, x = seed;
    int bad = 0;
    for (int it = 0; it < 300 && bad < 3; it++) {
        char text[400];
        size_t m = 0;
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        int words = (int)(x % 40);
        for (int w = 0; w < words; w++) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            const char *f = frags[x % (uint64_t)nf];
            memcpy(text + m, f, strlen(f));
            m += strlen(f);
        }
        text[m] = '\0';
        int32_t want[2048], got[2048];
        int nw = oracle_encode(&o, text, want);
        int64_t ng = tok_encode(fx.t, text, m, 0, got, 2048);
        if (m == 0) nw = 0; /* llama.cpp: no dummy prefix for "" */
        if (ng != nw || memcmp(want, got, sizeof *got * (size_t)nw) != 0) {
            fprintf(stderr, "  seed %llu it %d: mismatch on '%s' (%lld vs %d)\n",
                    (unsigned long long)seed, it, text, (long long)ng, nw);
            bad++;
        }
    }
    T_CHECK(bad == 0);
    oracle_free(&o);
    fx_close(&fx);
}

static int64_t count_file(const tok *t, const char *path, double *secs)
{
    size_t len;
    char *text = t_slurp(path, &len);
    if (!text) return -1;
    size_t cap = tok_encode_bound(len);
    int32_t *ids = malloc(cap * sizeof *ids);
    double t0 = kvt_now_s();
    int64_t n = tok_encode(t, text, len, 1, ids, cap);
    *secs = kvt_now_s() - t0;
    /* Round trip: the pieces decode back to the text (the dummy prefix
     * adds one leading space). */
    if (n > 0) {
        char *dec = malloc(len + 64), piece[256];
        size_t m = 0;
        int ok = 1;
        for (int64_t i = 0; i < n && ok; i++) {
            int k = tok_decode_piece(t, ids[i], piece, sizeof piece);
            if (k < 0 || m + (size_t)k > len + 1) ok = 0;
            else {
                memcpy(dec + m, piece, (size_t)k);
                m += (size_t)k;
            }
        }
        T_CHECK(ok);
        T_CHECK(m == len + 1 && dec[0] == ' ');
        T_CHECK(ok && m == len + 1 && memcmp(dec + 1, text, len) == 0);
        free(dec);
    }
    free(ids);
    free(text);
    return n;
}

static void test_kjv_counts(void)
{
    fixture fx;
    if (fx_open(&fx, "models/tiny-kjv-f32.gguf") < 0) {
        T_CHECK(0);
        fx_close(&fx);
        return;
    }
    T_CHECK(tok_n_vocab(fx.t) == 1024);
    T_CHECK(tok_bos(fx.t) == 1);
    T_CHECK(tok_eos(fx.t) == 2);
    T_CHECK(tok_add_bos(fx.t) == 1);
    T_CHECK(strcmp(tok_piece(fx.t, 1), "<s>") == 0);
    T_CHECK(tok_piece(fx.t, 1024) == NULL);
    T_CHECK(tok_piece(fx.t, -1) == NULL);
    double secs;
    int64_t n = count_file(fx.t, "tests/data/kjv-nt.txt", &secs);
    fprintf(stderr, "  kjv-nt: %lld tokens in %.2f s\n", (long long)n, secs);
    T_CHECK(n == 353295);
    n = count_file(fx.t, "tests/data/kjv.txt", &secs);
    fprintf(stderr, "  kjv: %lld tokens in %.2f s\n", (long long)n, secs);
    T_CHECK(n == 1511144);
    fx_close(&fx);
}

/* Encode then decode; SPM drops the dummy-prefix space. */
static void roundtrip(const tok *t, const char *s, int spm)
{
    size_t len = strlen(s);
    int32_t ids[512];
    int64_t n = tok_encode(t, s, len, 0, ids, 512);
    T_CHECK(n >= 0);
    char out[1024], piece[64];
    size_t m = 0;
    for (int64_t i = 0; i < n; i++) {
        int k = tok_decode_piece(t, ids[i], piece, sizeof piece);
        T_CHECK(k >= 0);
        if (k < 0 || m + (size_t)k >= sizeof out) return;
        memcpy(out + m, piece, (size_t)k);
        m += (size_t)k;
    }
    out[m] = '\0';
    const char *got = out;
    if (spm && len > 0) {
        T_CHECK(out[0] == ' ');
        got = out + 1;
    }
    if (strcmp(got, s) != 0)
        fprintf(stderr, "  roundtrip: '%s' -> '%s'\n", s, got);
    T_CHECK(strcmp(got, s) == 0);
}

static const char *const samples[] = {
    "Hello world", "  leading spaces", "trailing spaces   ",
    "tabs\tand\nnewlines\n\n", "In the beginning God created the heaven",
    "x", "1234567890 + 0x7f == ?", "don't we'll they've I'm", "~!@#$%^&*()",
    "caf\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x98\x80", /* bytes/CJK */
};

static void test_roundtrip(void)
{
    static const char *const files[] = {"models/tiny-kjv-f32.gguf",
                                        "tests/data/vocab/ggml-vocab-llama-spm.gguf",
                                        "tests/data/vocab/ggml-vocab-gpt-2.gguf"};
    for (int f = 0; f < 3; f++) {
        fixture fx;
        if (fx_open(&fx, files[f]) < 0) {
            T_CHECK(0);
            fx_close(&fx);
            continue;
        }
        for (size_t i = 0; i < sizeof samples / sizeof *samples; i++)
            roundtrip(fx.t, samples[i], f < 2);
        fx_close(&fx);
    }
}

static void test_invalid_utf8(void)
{
    static const char *const bad[] = {
        "\xff", "abc\xfe", "\x80", "\xc3", "ok\xe4\xb8", "\xf0\x9f\x98",
        "\xc0\xaf", "\xc1\xbf", "\xe0\x80\xaf", "\xf0\x80\x80\xaf", /* overlong */
        "\xed\xa0\x80", "\xed\xbf\xbf",                          /* surrogate */
        "\xf4\x90\x80\x80", "\xf5\x80\x80\x80",                  /* > U+10FFFF */
        "a\xc3(b",
    };
    static const char *const good[] = {
        "\x7f", "\xc2\x80", "\xdf\xbf", "\xe0\xa0\x80", "\xed\x9f\xbf",
        "\xee\x80\x80", "\xf0\x90\x80\x80", "\xf4\x8f\xbf\xbf",
    };
    static const char *const files[] = {"models/tiny-kjv-f32.gguf",
                                        "tests/data/vocab/ggml-vocab-gpt-2.gguf"};
    for (int f = 0; f < 2; f++) {
        fixture fx;
        if (fx_open(&fx, files[f]) < 0) {
            T_CHECK(0);
            fx_close(&fx);
            continue;
        }
        int32_t ids[64];
        for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
            int64_t n = tok_encode(fx.t, bad[i], strlen(bad[i]), 1, ids, 64);
            if (n != KVT_EUTF8) fprintf(stderr, "  bad[%zu] -> %lld\n", i,
                                        (long long)n);
            T_CHECK(n == KVT_EUTF8);
        }
        for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
            int64_t n = tok_encode(fx.t, good[i], strlen(good[i]), 0, ids, 64);
            if (n <= 0) fprintf(stderr, "  good[%zu] -> %lld\n", i,
                                (long long)n);
            T_CHECK(n > 0);
        }
        /* an embedded NUL is valid UTF-8 */
        T_CHECK(tok_encode(fx.t, "a\0b", 3, 0, ids, 64) > 0);
        fx_close(&fx);
    }
}

static void test_edge_cases(void)
{
    fixture fx;
    if (fx_open(&fx, "models/tiny-kjv-f32.gguf") < 0) {
        T_CHECK(0);
        fx_close(&fx);
        return;
    }
    int32_t ids[64];
    /* empty: nothing, or BOS alone */
    T_CHECK(tok_encode(fx.t, "", 0, 0, ids, 64) == 0);
    T_CHECK(tok_encode(fx.t, "", 0, 1, ids, 64) == 1 && ids[0] == 1);
    T_CHECK(tok_encode(fx.t, NULL, 0, 1, ids, 64) == 1);
    /* only whitespace: decodes back to the same whitespace */
    const char *ws = "   \n\n \n";
    int64_t n = tok_encode(fx.t, ws, strlen(ws), 0, ids, 64);
    T_CHECK(n > 0);
    char out[64], piece[32];
    size_t m = 0;
    for (int64_t i = 0; i < n; i++) {
        int k = tok_decode_piece(fx.t, ids[i], piece, sizeof piece);
        T_CHECK(k >= 0 && m + (size_t)k < sizeof out);
        if (k < 0 || m + (size_t)k >= sizeof out) break;
        memcpy(out + m, piece, (size_t)k);
        m += (size_t)k;
    }
    T_CHECK(m == strlen(ws) + 1 && memcmp(out + 1, ws, strlen(ws)) == 0);
    /* capacity: too small -> -ENOSPC, exact -> ok */
    const char *s = "In the beginning God created the heaven and the earth.";
    int64_t full = tok_encode(fx.t, s, strlen(s), 1, ids, 64);
    T_CHECK(full > 2);
    T_CHECK(tok_encode(fx.t, s, strlen(s), 1, ids, (size_t)full - 1) == -ENOSPC);
    T_CHECK(tok_encode(fx.t, s, strlen(s), 1, ids, (size_t)full) == full);
    T_CHECK(tok_encode(fx.t, s, strlen(s), 1, ids, 0) == -ENOSPC);
    /* decode: BOS is a control token -> "", small buffer -> -ENOSPC */
    T_CHECK(tok_decode_piece(fx.t, 1, piece, sizeof piece) == 0);
    T_CHECK(tok_decode_piece(fx.t, ids[1], piece, 0) == -ENOSPC);
    /* the bound holds for byte-fallback-heavy text: 4 bytes -> 4 ids */
    const char *fb = "\xf4\x8f\xbf\xbf\xf4\x8f\xbf\xbf";
    n = tok_encode(fx.t, fb, 8, 1, ids, tok_encode_bound(8));
    T_CHECK(n >= 9 && (size_t)n <= tok_encode_bound(8));
    T_CHECK(tok_encode_bound(0) >= 1);
    fx_close(&fx);
}

/* Known tokenizations of the tiny model's SentencePiece vocabulary,
 * checked piece by piece: the ids spell the input. */
static void test_spm_pieces(void)
{
    fixture fx;
    if (fx_open(&fx, "tests/data/vocab/ggml-vocab-llama-spm.gguf") < 0) {
        T_CHECK(0);
        fx_close(&fx);
        return;
    }
    int32_t ids[16];
    /* llama-2: " Hello" -> ▁Hello (15043), " world" -> ▁world (3186) */
    int64_t n = tok_encode(fx.t, "Hello world", 11, 1, ids, 16);
    T_CHECK(n == 3 && ids[0] == 1 && ids[1] == 15043 && ids[2] == 3186);
    T_CHECK(strcmp(tok_piece(fx.t, 15043), "\xe2\x96\x81Hello") == 0);
    /* byte fallback: U+10FFFF is not a piece: 4 byte tokens <0xF4>... */
    n = tok_encode(fx.t, "\xf4\x8f\xbf\xbf", 4, 0, ids, 16);
    T_CHECK(n == 5);
    T_CHECK(n == 5 && strcmp(tok_piece(fx.t, ids[1]), "<0xF4>") == 0);
    char b[8];
    T_CHECK(n == 5 && tok_decode_piece(fx.t, ids[1], b, sizeof b) == 1 &&
            (unsigned char)b[0] == 0xF4);
    fx_close(&fx);
}

/* A 7-piece SPM vocabulary with PIECE5/TYPE5 as token 5 and one extra
 * key/value (u32), written and opened. @return tok_open's code, the
 * message in err. */
static int hostile_open(const char *piece5, int32_t type5, const char *key, uint32_t val,
                        char *err, size_t cap, tok **out)
{
    const char *pieces[7] = { "<unk>", "<s>", "</s>", "<0x41>", "a", piece5, "b" };
    int32_t types[7] = { 2, 3, 3, 6, 1, type5, 1 };
    float scores[7] = { 0, 0, 0, 0, -1, -2, -3 };
    char path[256];
    snprintf(path, sizeof path, "/tmp/kvt-hostile-%d.gguf", (int)getpid());
    gguf_w *w;
    T_CHECK(gguf_w_init(&w) == 0);
    gguf_w_set_str(w, "tokenizer.ggml.model", "llama");
    gguf_w_set_arr_str(w, "tokenizer.ggml.tokens", pieces, NULL, 7);
    gguf_w_set_arr(w, "tokenizer.ggml.token_type", GGUF_VT_I32, types, 7);
    gguf_w_set_arr(w, "tokenizer.ggml.scores", GGUF_VT_F32, scores, 7);
    if (key) gguf_w_set_u32(w, key, val);
    T_CHECK(gguf_w_write(w, path) == 0);
    gguf_w_free(w);
    gguf *g;
    int rc = gguf_open(path, &g, err, cap);
    T_CHECK(rc == 0);
    unlink(path);
    if (rc < 0) return rc;
    *out = NULL;
    err[0] = 0;
    rc = tok_open(g, out, err, cap);
    if (rc == 0) {
        char b[8];
        T_CHECK(tok_decode_piece(*out, 3, b, sizeof b) == 1 && b[0] == 'A');
        tok_free(*out);
    }
    gguf_close(g);
    return rc;
}

/* Hostile vocabularies: special ids outside the vocabulary and malformed
 * byte pieces are refused with a message naming the key or the token. */
static void test_hostile_vocab(void)
{
    char err[256];
    tok *t;
    T_CHECK(hostile_open("c", 1, NULL, 0, err, sizeof err, &t) == 0);
    T_CHECK(hostile_open("c", 1, "tokenizer.ggml.bos_token_id", 6, err, sizeof err, &t) == 0);
    static const char *const keys[] = {
        "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
        "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.padding_token_id",
        "tokenizer.ggml.seperator_token_id", "tokenizer.ggml.eot_token_id",
    };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        T_CHECK(hostile_open("c", 1, keys[i], 7, err, sizeof err, &t) == KVT_ERANGE);
        T_CHECK(strstr(err, keys[i]) != NULL && strstr(err, "outside the vocabulary"));
        T_CHECK(hostile_open("c", 1, keys[i], 0xffffffffu, err, sizeof err, &t) == KVT_ERANGE);
    }
    /* malformed byte pieces, whether typed BYTE or NORMAL */
    static const char *const bad[] = { "<0x-1>", "<0xZZ>", "<0x1>", "<0x123>", "<0x4G>" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        for (int ty = 1; ty <= 6; ty += 5) {
            T_CHECK(hostile_open(bad[i], ty, NULL, 0, err, sizeof err, &t) == KVT_EFORMAT);
            T_CHECK(strstr(err, "tokenizer.ggml.tokens[5]") && strstr(err, bad[i]));
        }
    /* lower-case hex is a byte piece; two pieces for one byte are refused */
    T_CHECK(hostile_open("<0x4a>", 6, NULL, 0, err, sizeof err, &t) == 0);
    T_CHECK(hostile_open("<0x41>", 6, NULL, 0, err, sizeof err, &t) < 0); /* a repeated piece */
    T_CHECK(hostile_open("<0x41>", 1, NULL, 0, err, sizeof err, &t) < 0);
    T_CHECK(hostile_open("<0X41>", 1, NULL, 0, err, sizeof err, &t) == 0); /* not byte-like: text */
}

int main(void)
{
    T_RUN(test_hostile_vocab);
    T_RUN(test_vectors_llama_spm);
    T_RUN(test_vectors_phi3);
    T_RUN(test_vectors_gpt2);
    T_RUN(test_vectors_llama_bpe);
    T_RUN(test_vectors_deepseek_llm);
    T_RUN(test_vectors_deepseek_coder);
    T_RUN(test_pretok_names_vs_llama_cpp);
    T_RUN(test_spm_pieces);
    T_RUN(test_spm_oracle);
    T_RUN(test_roundtrip);
    T_RUN(test_invalid_utf8);
    T_RUN(test_edge_cases);
    T_RUN(test_kjv_counts);
    return t_done();
}
