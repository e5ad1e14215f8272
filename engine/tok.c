/* tok.c - SentencePiece-style BPE ("llama") and byte-level BPE ("gpt2")
 * tokenizers, matching llama.cpp's llm_tokenizer_spm / llm_tokenizer_bpe
 * with add_special = false, parse_special = false (see tok.h).
 *
 * SPM: the whole text (spaces -> U+2581, dummy prefix) is one sequence of
 * UTF-8 characters; adjacent pairs whose concatenation is a piece are
 * merged best score first (ties: left-most) through a binary heap with
 * lazy invalidation; a final symbol that is not a piece becomes byte
 * tokens <0xNN>. Exactness trick for speed and memory: an ASCII character
 * that occurs in no piece of two or more characters can never be part of a
 * merge, so the text is cut there into independent segments; the result
 * is identical to running over the whole text at once.
 *
 * BPE: the GPT-2 pre-tokenizer regex (PCRE2, UTF + UCP) splits the text
 * into words; each word's bytes are mapped to printable code points and
 * merged lowest merge rank first (ties: left-most).
 */
#include "engine/tok.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "engine/pretok.h"
#include "engine/tok_special.h"
#include "io/kvt.h"

enum { TOK_SPM = 0, TOK_BPE = 1 };

/* llama.cpp token types (tokenizer.ggml.token_type). */
enum {
    TOK_T_UNDEFINED = 0, TOK_T_NORMAL = 1, TOK_T_UNKNOWN = 2,
    TOK_T_CONTROL = 3, TOK_T_USER = 4, TOK_T_UNUSED = 5, TOK_T_BYTE = 6
};

/* Longest text tok_encode accepts (symbol indices are int32). */
#define TOK_TEXT_MAX ((size_t)1 << 28)

/* ---- string table: strings in one arena + open-addressing hash ---------- */

typedef struct tok_strtab {
    char *arena;    /* strings, each NUL-terminated */
    size_t *off;    /* (n) */
    uint32_t *len;  /* (n) */
    int n;
    int32_t *slot;  /* (mask + 1): 0 or index + 1 */
    size_t mask;
} tok_strtab;

static uint64_t tok_hash(const char *s, size_t n) { return XXH3_64bits(s, n); }

/* Index of string S[0..n) or -1. */
static int tok_tab_find(const tok_strtab *t, const char *s, size_t n)
{
    size_t h = (size_t)tok_hash(s, n) & t->mask;
    for (;;) {
        int32_t v = t->slot[h];
        if (v == 0) return -1;
        int i = v - 1;
        if (t->len[i] == n && memcmp(t->arena + t->off[i], s, n) == 0)
            return i;
        h = (h + 1) & t->mask;
    }
}

/* Index string I; when another index holds the same string, LAST_WINS
 * chooses which one the table keeps. */
static void tok_tab_insert(tok_strtab *t, int i, int last_wins)
{
    const char *s = t->arena + t->off[i];
    size_t h = (size_t)tok_hash(s, t->len[i]) & t->mask;
    for (;;) {
        int32_t v = t->slot[h];
        if (v == 0) {
            t->slot[h] = i + 1;
            return;
        }
        int j = v - 1;
        if (t->len[j] == t->len[i] && memcmp(t->arena + t->off[j], s,
                                              t->len[i]) == 0) {
            if (last_wins) t->slot[h] = i + 1;
            return;
        }
        h = (h + 1) & t->mask;
    }
}

static void tok_tab_free(tok_strtab *t)
{
    free(t->arena);
    free(t->off);
    free(t->len);
    free(t->slot);
}

/* Fill T from the string array KEY of G. */
static int tok_tab_load(tok_strtab *t, const gguf *g, const char *key,
                        int last_wins)
{
    int et;
    uint64_t n;
    int rc = gguf_get_arr(g, key, &et, &n);
    if (rc < 0) return rc;
    if (et != GGUF_VT_STR || n == 0 || n > INT32_MAX / 4) return KVT_EFORMAT;
    size_t total = 0;
    for (uint64_t i = 0; i < n; i++) {
        const char *s;
        size_t len;
        if ((rc = gguf_arr_str(g, key, i, &s, &len)) < 0) return rc;
        if (len > UINT32_MAX) return KVT_EFORMAT;
        total += len + 1; /* bounded by the file size */
    }
    size_t cap = 16;
    while (cap < 2 * (size_t)n) cap *= 2;
    t->n = (int)n;
    t->arena = malloc(total);
    t->off = malloc(n * sizeof *t->off);
    t->len = malloc(n * sizeof *t->len);
    t->slot = calloc(cap, sizeof *t->slot);
    t->mask = cap - 1;
    if (!t->arena || !t->off || !t->len || !t->slot) return -ENOMEM;
    size_t pos = 0;
    for (uint64_t i = 0; i < n; i++) {
        const char *s;
        size_t len;
        gguf_arr_str(g, key, i, &s, &len);
        memcpy(t->arena + pos, s, len);
        t->arena[pos + len] = '\0';
        t->off[i] = pos;
        t->len[i] = (uint32_t)len;
        pos += len + 1;
        tok_tab_insert(t, (int)i, last_wins);
    }
    return 0;
}

/* ---- the handle ---------------------------------------------------------- */

struct tok {
    int model;             /* TOK_SPM or TOK_BPE */
    tok_strtab vocab;      /* pieces; id = index */
    float *score;          /* (n_vocab) SPM merge scores */
    uint8_t *type;         /* (n_vocab) TOK_T_* */
    tok_strtab merges;     /* BPE: "left right"; rank = index */
    int bos, eos, unk, add_bos, add_eos, add_space_prefix;
    toksp *special;        /* control/user/unknown pieces, matched in text */
    int32_t byte_tok[256]; /* id for a raw byte (fallback), -1 if none */
    uint8_t isolated[128]; /* SPM: ASCII char in no multi-char piece */
    pretok *pre;           /* BPE pre-tokenizer */
    int ignore_merges;     /* BPE: a word that is a piece is not merged */
    char b2u[256][2];      /* BPE: byte -> UTF-8 of its code point */
    uint8_t b2u_len[256];
    int16_t u2b[324];      /* BPE: code point -> byte, -1 if none */
};

#if defined(__GNUC__)
__attribute__((format(printf, 4, 5)))
#endif
static int tok_fail(char *err, size_t cap, int code, const char *fmt, ...)
{
    if (err && cap > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, cap, fmt, ap);
        va_end(ap);
    }
    return code;
}

/* Bytes in the UTF-8 sequence starting with lead byte C (1 for bad). */
static size_t tok_utf8_len(unsigned char c)
{
    static const uint8_t lens[16] = {1, 1, 1, 1, 1, 1, 1, 1,
                                     1, 1, 1, 1, 2, 2, 3, 4};
    return lens[c >> 4];
}

/* Length of the well-formed UTF-8 sequence at S[0..n) (no overlongs,
 * surrogates or code points > U+10FFFF), or 0 if S does not start one. */
static size_t tok_char_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t k;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) k = 1;
    else if (c >= 0xE0 && c <= 0xEF) {
        k = 2;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        k = 3;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else return 0;
    if (n <= k) return 0;
    if (s[1] < lo || s[1] > hi) return 0;
    for (size_t j = 2; j <= k; j++)
        if ((s[j] & 0xC0) != 0x80) return 0;
    return k + 1;
}

/* Offset of the first byte of S[0..n) that starts no well-formed UTF-8
 * sequence, or n if S is well-formed. */
static size_t tok_utf8_bad(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        size_t k = tok_char_len(s + i, n - i);
        if (k == 0) return i;
        i += k;
    }
    return n;
}

/* ---- open ---------------------------------------------------------------- */

static int tok_opt_id(const gguf *g, const char *key, int def, int n,
                      int *out)
{
    int64_t v;
    int rc = gguf_get_int(g, key, &v);
    if (rc == KVT_EMISSING) {
        *out = def < n ? def : -1;
        return 0;
    }
    if (rc < 0) return rc;
    *out = (v >= 0 && v < n) ? (int)v : -1;
    return 0;
}

static int tok_opt_bool(const gguf *g, const char *key, int def, int *out)
{
    int64_t v;
    int rc = gguf_get_int(g, key, &v);
    if (rc == KVT_EMISSING) {
        *out = def;
        return 0;
    }
    if (rc < 0) return rc;
    *out = v != 0;
    return 0;
}

/* GPT-2 bytes_to_unicode: printable bytes map to themselves, the others to
 * 256, 257, ... in byte order. */
static void tok_init_byte_map(tok *t)
{
    int next = 256;
    for (int i = 0; i < 324; i++) t->u2b[i] = -1;
    for (int b = 0; b < 256; b++) {
        int keep = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) ||
                   (b >= 174 && b <= 255);
        int cp = keep ? b : next++;
        t->u2b[cp] = (int16_t)b;
        if (cp < 0x80) {
            t->b2u[b][0] = (char)cp;
            t->b2u_len[b] = 1;
        } else {
            t->b2u[b][0] = (char)(0xC0 | (cp >> 6));
            t->b2u[b][1] = (char)(0x80 | (cp & 0x3F));
            t->b2u_len[b] = 2;
        }
    }
}

static int tok_id(const tok *t, const char *s, size_t n)
{
    return tok_tab_find(&t->vocab, s, n);
}

static void tok_init_bytes(tok *t)
{
    for (int b = 0; b < 256; b++) {
        char buf[8];
        int id;
        if (t->model == TOK_BPE) {
            id = tok_id(t, t->b2u[b], t->b2u_len[b]);
        } else {
            snprintf(buf, sizeof buf, "<0x%02X>", b);
            id = tok_id(t, buf, 6);
            if (id < 0) {
                buf[0] = (char)b;
                id = tok_id(t, buf, 1);
            }
            if (id < 0) id = t->unk;
        }
        t->byte_tok[b] = id;
    }
    memset(t->isolated, 1, sizeof t->isolated);
    for (int i = 0; i < t->vocab.n; i++) {
        const unsigned char *s =
            (const unsigned char *)t->vocab.arena + t->vocab.off[i];
        size_t n = t->vocab.len[i];
        if (n == 0 || tok_utf8_len(s[0]) >= n) continue; /* one char */
        for (size_t j = 0; j < n; j++)
            if (s[j] < 0x80) t->isolated[s[j]] = 0;
    }
    t->isolated[' '] = 0; /* a space is escaped to U+2581 before merging */
}

static int tok_load_arrays(tok *t, const gguf *g, char *err, size_t cap)
{
    int n = t->vocab.n, et;
    uint64_t m;
    t->score = calloc((size_t)n, sizeof *t->score);
    t->type = malloc((size_t)n);
    if (!t->score || !t->type) return -ENOMEM;
    memset(t->type, TOK_T_NORMAL, (size_t)n);
    int rc = gguf_get_arr(g, "tokenizer.ggml.scores", &et, &m);
    if (rc == 0) {
        if (m != (uint64_t)n)
            return tok_fail(err, cap, KVT_EFORMAT, "tokenizer.ggml.scores "
                            "has %llu entries, want %d",
                            (unsigned long long)m, n);
        for (int i = 0; i < n; i++) {
            double v;
            if ((rc = gguf_arr_float(g, "tokenizer.ggml.scores", (uint64_t)i,
                                     &v)) < 0)
                return tok_fail(err, cap, rc, "tokenizer.ggml.scores is "
                                "not numeric");
            t->score[i] = (float)v;
        }
    } else if (rc != KVT_EMISSING) {
        return tok_fail(err, cap, rc, "tokenizer.ggml.scores: bad type");
    }
    rc = gguf_get_arr(g, "tokenizer.ggml.token_type", &et, &m);
    if (rc == 0) {
        if (m != (uint64_t)n)
            return tok_fail(err, cap, KVT_EFORMAT, "tokenizer.ggml.token_type"
                            " has %llu entries, want %d",
                            (unsigned long long)m, n);
        for (int i = 0; i < n; i++) {
            int64_t v;
            if ((rc = gguf_arr_int(g, "tokenizer.ggml.token_type",
                                   (uint64_t)i, &v)) < 0)
                return tok_fail(err, cap, rc, "tokenizer.ggml.token_type is "
                                "not an integer array");
            t->type[i] = (v >= 0 && v <= TOK_T_BYTE) ? (uint8_t)v
                                                      : TOK_T_UNDEFINED;
        }
    } else if (rc != KVT_EMISSING) {
        return tok_fail(err, cap, rc, "tokenizer.ggml.token_type: bad type");
    }
    return 0;
}

/* Defaults when the file has no key, as llama.cpp: SPM BOS 1, EOS 2, unk 0,
 * BOS added; byte-level BPE BOS = EOS = 11 (none for chatglm-bpe), no unk,
 * BOS added for the pre-tokenizers that say so (llama-bpe, tekken,
 * chameleon); EOS never added by default. */
static int tok_load_specials(tok *t, const gguf *g)
{
    int n = t->vocab.n, spm = t->model == TOK_SPM, rc;
    unsigned pf = t->pre ? pretok_flags(t->pre) : 0;
    int def_bos = spm ? 1 : (pf & PRETOK_NO_BOS) ? -1 : 11;
    int def_add_bos = spm || (pf & PRETOK_ADD_BOS);
    if ((rc = tok_opt_id(g, "tokenizer.ggml.bos_token_id", def_bos, n,
                         &t->bos)) < 0 ||
        (rc = tok_opt_id(g, "tokenizer.ggml.eos_token_id", spm ? 2 : 11, n,
                         &t->eos)) < 0 ||
        (rc = tok_opt_id(g, "tokenizer.ggml.unknown_token_id", spm ? 0 : -1,
                         n, &t->unk)) < 0 ||
        (rc = tok_opt_bool(g, "tokenizer.ggml.add_bos_token", def_add_bos,
                           &t->add_bos)) < 0 ||
        (rc = tok_opt_bool(g, "tokenizer.ggml.add_eos_token", 0,
                           &t->add_eos)) < 0 ||
        (rc = tok_opt_bool(g, "tokenizer.ggml.add_space_prefix", spm,
                           &t->add_space_prefix)) < 0)
        return rc;
    return 0;
}

/* Pieces llama.cpp treats as control tokens whatever their token_type:
 * the end-of-generation texts always, the others (fill-in-the-middle,
 * DeepSeek's end of sentence) when the file names no id for their role. */
static void tok_mark_control(tok *t, const gguf *g)
{
    static const struct {
        const char *key; /* NULL: always */
        const char *key2;
        const char *text[4];
    } roles[] = {
        {NULL, NULL, {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>"}},
        {NULL, NULL, {"<|endoftext|>", "<|eom_id|>", "<EOT>", NULL}},
        {"tokenizer.ggml.eot_token_id", NULL,
         {"<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>", NULL}},
        {"tokenizer.ggml.fim_pre_token_id", "tokenizer.ggml.prefix_token_id",
         {"<|fim_prefix|>", "<fim-prefix>",
          "<\xef\xbd\x9c" "fim\xe2\x96\x81" "begin\xef\xbd\x9c>", "<PRE>"}},
        {"tokenizer.ggml.fim_suf_token_id", "tokenizer.ggml.suffix_token_id",
         {"<|fim_suffix|>", "<fim-suffix>",
          "<\xef\xbd\x9c" "fim\xe2\x96\x81hole\xef\xbd\x9c>", "<SUF>"}},
        {"tokenizer.ggml.fim_mid_token_id", "tokenizer.ggml.middle_token_id",
         {"<|fim_middle|>", "<fim-middle>",
          "<\xef\xbd\x9c" "fim\xe2\x96\x81" "end\xef\xbd\x9c>", "<MID>"}},
        {"tokenizer.ggml.fim_pad_token_id", NULL,
         {"<|fim_pad|>", "<fim-pad>", "<PAD>", NULL}},
        {"tokenizer.ggml.fim_rep_token_id", NULL,
         {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>"}},
        {"tokenizer.ggml.fim_sep_token_id", NULL, {"<|file_sep|>", NULL}},
    };
    for (size_t r = 0; r < sizeof roles / sizeof roles[0]; r++) {
        int64_t v;
        if (roles[r].key && (gguf_get_int(g, roles[r].key, &v) == 0 ||
                             (roles[r].key2 &&
                              gguf_get_int(g, roles[r].key2, &v) == 0)))
            continue;
        for (int k = 0; k < 4 && roles[r].text[k]; k++) {
            int id = tok_id(t, roles[r].text[k], strlen(roles[r].text[k]));
            if (id >= 0) t->type[id] = TOK_T_CONTROL;
        }
    }
}

/* 1 if general.name names a Phi-3 model (llama.cpp strips the spaces
 * after its special pieces). */
static int tok_is_phi3(const gguf *g)
{
    const char *s;
    size_t n;
    if (gguf_get_str(g, "general.name", &s, &n) < 0) return 0;
    for (size_t i = 0; i + 4 <= n; i++) {
        char c[5];
        for (int k = 0; k < 5 && i + (size_t)k < n; k++)
            c[k] = (char)tolower((unsigned char)s[i + (size_t)k]);
        if (memcmp(c, "phi3", 4) == 0 ||
            (i + 5 <= n && memcmp(c, "phi-3", 5) == 0))
            return 1;
    }
    return 0;
}

/* The pieces matched inside text before the split (llama.cpp's special
 * token cache): control, user-defined and unknown. */
static int tok_init_special(tok *t, const gguf *g)
{
    int n = t->vocab.n, m = 0, phi3 = tok_is_phi3(g);
    int32_t *id = malloc(sizeof *id * (size_t)n);
    const char **text = malloc(sizeof *text * (size_t)n);
    uint32_t *len = malloc(sizeof *len * (size_t)n);
    uint8_t *fl = malloc((size_t)n);
    int rc = -ENOMEM;
    if (id && text && len && fl) {
        for (int i = 0; i < n; i++) {
            int ty = t->type[i];
            if (t->vocab.len[i] == 0 || (ty != TOK_T_USER &&
                                         ty != TOK_T_CONTROL &&
                                         ty != TOK_T_UNKNOWN))
                continue;
            const char *p = t->vocab.arena + t->vocab.off[i];
            id[m] = i;
            text[m] = p;
            len[m] = t->vocab.len[i];
            fl[m] = ty == TOK_T_USER ? TOKSP_USER : TOKSP_CONTROL;
            if (phi3 && strcmp(p, "<unk>") != 0 && strcmp(p, "<s>") != 0 &&
                strcmp(p, "<|endoftext|>") != 0)
                fl[m] |= TOKSP_RSTRIP;
            m++;
        }
        rc = toksp_build(m, id, text, len, fl, &t->special);
    }
    free(id);
    free(text);
    free(len);
    free(fl);
    return rc;
}

/* BPE: the pre-tokenizer PRE, else tokenizer.ggml.pre, else "default"
 * (as llama.cpp, for files converted before the key existed). */
static int tok_open_pre(tok *t, const gguf *g, const char *pre, char *err,
                        size_t cap)
{
    const char *name = "default";
    size_t len = 7;
    if (pre) {
        name = pre;
        len = strlen(pre);
    } else {
        int rc = gguf_get_str(g, "tokenizer.ggml.pre", &name, &len);
        if (rc == KVT_EMISSING) {
            name = "default";
            len = 7;
        } else if (rc < 0) {
            return tok_fail(err, cap, rc, "tokenizer.ggml.pre is not a "
                            "string");
        }
    }
    int rc = pretok_open(name, len, &t->pre, err, cap);
    if (rc == 0)
        t->ignore_merges = !!(pretok_flags(t->pre) & PRETOK_IGNORE_MERGES);
    return rc;
}

static int tok_open_impl(tok *t, const gguf *g, const struct tok_params *p,
                         char *err, size_t cap)
{
    const char *model;
    size_t mlen;
    int rc = gguf_get_str(g, "tokenizer.ggml.model", &model, &mlen);
    if (rc < 0)
        return tok_fail(err, cap, rc, "no string tokenizer.ggml.model");
    if (mlen == 5 && memcmp(model, "llama", 5) == 0) t->model = TOK_SPM;
    else if (mlen == 4 && memcmp(model, "gpt2", 4) == 0) t->model = TOK_BPE;
    else
        return tok_fail(err, cap, KVT_EUNSUPP, "tokenizer model '%.*s' is "
                        "not supported (want llama or gpt2)",
                        (int)KVT_MIN(mlen, 32), model);
    rc = tok_tab_load(&t->vocab, g, "tokenizer.ggml.tokens", 1);
    if (rc < 0)
        return tok_fail(err, cap, rc, "tokenizer.ggml.tokens: %s",
                        kvt_strerror(rc));
    if ((rc = tok_load_arrays(t, g, err, cap)) < 0) return rc;
    if (t->model == TOK_BPE) {
        if ((rc = tok_open_pre(t, g, p ? p->pre : NULL, err, cap)) < 0)
            return rc;
        rc = tok_tab_load(&t->merges, g, "tokenizer.ggml.merges", 0);
        if (rc < 0)
            return tok_fail(err, cap, rc, "tokenizer.ggml.merges: %s",
                            kvt_strerror(rc));
    }
    if ((rc = tok_load_specials(t, g)) < 0)
        return tok_fail(err, cap, rc, "bad special token metadata");
    tok_mark_control(t, g);
    if ((rc = tok_init_special(t, g)) < 0) return rc;
    tok_init_byte_map(t);
    tok_init_bytes(t);
    return 0;
}

int tok_open(const gguf *g, tok **out, char *err, size_t err_cap)
{
    return tok_open_with(g, NULL, out, err, err_cap);
}

int tok_open_with(const gguf *g, const struct tok_params *p, tok **out,
                  char *err, size_t err_cap)
{
    KVT_ASSERT(g != NULL);
    KVT_ASSERT(out != NULL);
    *out = NULL;
    if (err && err_cap) err[0] = '\0';
    tok *t = calloc(1, sizeof *t);
    if (!t) return -ENOMEM;
    int rc = tok_open_impl(t, g, p, err, err_cap);
    if (rc < 0) {
        if (rc == -ENOMEM) tok_fail(err, err_cap, rc, "out of memory");
        tok_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

void tok_free(tok *t)
{
    if (!t) return;
    tok_tab_free(&t->vocab);
    tok_tab_free(&t->merges);
    free(t->score);
    free(t->type);
    pretok_free(t->pre);
    toksp_free(t->special);
    free(t);
}

int tok_n_vocab(const tok *t) { return t->vocab.n; }
int tok_bos(const tok *t) { return t->bos; }
int tok_eos(const tok *t) { return t->eos; }
int tok_add_bos(const tok *t) { return t->add_bos; }
int tok_add_eos(const tok *t) { return t->add_eos; }
const char *tok_pre_name(const tok *t)
{
    return t->pre ? pretok_name(t->pre) : NULL;
}

/* SPM: every byte can become up to 3 byte tokens (a space is U+2581, 3
 * bytes), plus the 3-byte dummy prefix, plus BOS. BPE needs at most len+1. */
size_t tok_encode_bound(size_t len)
{
    if (len > (SIZE_MAX - 16) / 4) return SIZE_MAX;
    return 4 * len + 8;
}

const char *tok_piece(const tok *t, int id)
{
    if (id < 0 || id >= t->vocab.n) return NULL;
    return t->vocab.arena + t->vocab.off[id];
}

/* ---- shared encode machinery -------------------------------------------- */

typedef struct tok_sym {
    int32_t off;  /* byte offset in the segment/word buffer */
    int32_t n;    /* bytes; 0 once merged into its left neighbour */
    int32_t prev, next;
    int32_t id;   /* piece id of the symbol's text, -1 if none */
} tok_sym;

/* A candidate merge of symbol LEFT with its right neighbour. KEY orders
 * the heap (SPM: -score; BPE: rank); smaller KEY first, then smaller LEFT.
 * Stale entries are recognized by SIZE (see tok_merge_all). */
typedef struct tok_pair {
    float key;
    int32_t left;
    int32_t size;
    int32_t id;
} tok_pair;

/* Per-call scratch, grown on demand (amortized; reused across segments). */
typedef struct tok_scratch {
    char *buf;
    size_t buf_cap;
    tok_sym *sym;
    size_t sym_cap;
    tok_pair *heap;
    size_t heap_cap, heap_n;
    char *key;      /* BPE: "left right" lookups */
    size_t key_cap;
} tok_scratch;

static int tok_grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q) return -ENOMEM;
    *p = q;
    *cap = c;
    return 0;
}

static void tok_scratch_free(tok_scratch *s)
{
    free(s->buf);
    free(s->sym);
    free(s->heap);
    free(s->key);
}

static int tok_pair_less(const tok_pair *a, const tok_pair *b)
{
    return a->key < b->key || (a->key == b->key && a->left < b->left);
}

static void tok_heap_push(tok_scratch *s, tok_pair p)
{
    KVT_ASSERT(s->heap_n < s->heap_cap);
    size_t i = s->heap_n++;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (!tok_pair_less(&p, &s->heap[up])) break;
        s->heap[i] = s->heap[up];
        i = up;
    }
    s->heap[i] = p;
}

static tok_pair tok_heap_pop(tok_scratch *s)
{
    tok_pair top = s->heap[0], last = s->heap[--s->heap_n];
    size_t i = 0, n = s->heap_n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && tok_pair_less(&s->heap[c + 1], &s->heap[c])) c++;
        if (!tok_pair_less(&s->heap[c], &last)) break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (n > 0) s->heap[i] = last;
    return top;
}

/* Split buf[0..len) into UTF-8 character symbols; sizes the heap for every
 * pair that can ever be pushed (n - 1 initial + 2 per merge). */
static int tok_symbols(tok_scratch *s, size_t len, size_t *n_out)
{
    int rc;
    if ((rc = tok_grow((void **)&s->sym, &s->sym_cap, len + 1,
                       sizeof *s->sym)) < 0 ||
        (rc = tok_grow((void **)&s->heap, &s->heap_cap, 3 * len + 1,
                       sizeof *s->heap)) < 0)
        return rc;
    size_t n = 0, i = 0;
    while (i < len) {
        size_t k = tok_char_len((const unsigned char *)s->buf + i, len - i);
        if (k == 0) k = 1; /* a byte of invalid UTF-8 (--utf8 replace) */
        s->sym[n] = (tok_sym){.off = (int32_t)i, .n = (int32_t)k,
                              .prev = (int32_t)n - 1,
                              .next = i + k < len ? (int32_t)n + 1 : -1,
                              .id = -1};
        n++;
        i += k;
    }
    s->heap_n = 0;
    *n_out = n;
    return 0;
}

/* The candidate merge of L with its right neighbour, if any. */
static void tok_try_pair(const tok *t, tok_scratch *s, int32_t l)
{
    if (l < 0) return;
    int32_t r = s->sym[l].next;
    if (r < 0) return;
    const char *a = s->buf + s->sym[l].off;
    size_t na = (size_t)s->sym[l].n, nb = (size_t)s->sym[r].n;
    tok_pair p = {.left = l, .size = (int32_t)(na + nb)};
    if (t->model == TOK_SPM) {
        int id = tok_id(t, a, na + nb);
        if (id < 0) return;
        p.key = -t->score[id];
        p.id = id;
    } else {
        char *k = s->key; /* sized by the caller: word bytes + 1 */
        memcpy(k, a, na);
        k[na] = ' ';
        memcpy(k + na + 1, a + na, nb);
        int rank = tok_tab_find(&t->merges, k, na + nb + 1);
        if (rank < 0) return;
        p.key = (float)rank; /* exact: ranks < 2^24 checked at use */
        p.id = rank;
    }
    tok_heap_push(s, p);
}

/* Run the merges over symbols 0..n-1 of s->buf. A popped pair is stale
 * when its left symbol was absorbed (n == 0) or either side changed size;
 * since symbols only grow by absorbing their right neighbour, equal total
 * SIZE with a live left symbol means the same two symbols. */
static void tok_merge_all(const tok *t, tok_scratch *s, size_t n)
{
    for (size_t i = 0; i + 1 < n; i++) tok_try_pair(t, s, (int32_t)i);
    while (s->heap_n > 0) {
        tok_pair p = tok_heap_pop(s);
        tok_sym *l = &s->sym[p.left];
        if (l->n == 0 || l->next < 0) continue;
        tok_sym *r = &s->sym[l->next];
        if (l->n + r->n != p.size) continue;
        l->n += r->n;
        l->id = t->model == TOK_SPM ? p.id : -1;
        r->n = 0;
        l->next = r->next;
        if (l->next >= 0) s->sym[l->next].prev = p.left;
        tok_try_pair(t, s, l->prev);
        tok_try_pair(t, s, p.left);
    }
}

typedef struct tok_out {
    int32_t *ids;
    size_t cap, n;
} tok_out;

static int tok_emit(tok_out *o, int32_t id)
{
    if (o->n >= o->cap) return -ENOSPC;
    o->ids[o->n++] = id;
    return 0;
}

/* ---- SPM ----------------------------------------------------------------- */

/* Emit the piece for TEXT[0..n), or its bytes as byte tokens. */
static int tok_spm_emit_text(const tok *t, tok_out *o, const char *text,
                             size_t n, int id)
{
    if (id >= 0) return tok_emit(o, id);
    for (size_t i = 0; i < n; i++) {
        int32_t b = t->byte_tok[(unsigned char)text[i]];
        if (b < 0) continue; /* no byte piece and no unk: dropped */
        int rc = tok_emit(o, b);
        if (rc < 0) return rc;
    }
    return 0;
}

/* Tokenize one segment: [dummy prefix] + escaped TEXT[0..len). */
static int tok_spm_segment(const tok *t, tok_scratch *s, tok_out *o,
                           const char *text, size_t len, int prefix)
{
    static const char sp[3] = {'\xe2', '\x96', '\x81'}; /* U+2581 */
    int rc = tok_grow((void **)&s->buf, &s->buf_cap, 3 * len + 4, 1);
    if (rc < 0) return rc;
    size_t m = 0;
    if (prefix) {
        memcpy(s->buf, sp, 3);
        m = 3;
    }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') {
            memcpy(s->buf + m, sp, 3);
            m += 3;
        } else {
            s->buf[m++] = text[i];
        }
    }
    size_t n;
    if ((rc = tok_symbols(s, m, &n)) < 0) return rc;
    for (size_t i = 0; i < n; i++)
        s->sym[i].id = tok_id(t, s->buf + s->sym[i].off,
                              (size_t)s->sym[i].n);
    tok_merge_all(t, s, n);
    for (int32_t i = n ? 0 : -1; i >= 0; i = s->sym[i].next) {
        rc = tok_spm_emit_text(t, o, s->buf + s->sym[i].off,
                               (size_t)s->sym[i].n, s->sym[i].id);
        if (rc < 0) return rc;
    }
    return 0;
}

/* SPM over one piece of text; PREFIX: add the dummy prefix (U+2581). */
static int tok_encode_spm(const tok *t, tok_scratch *s, tok_out *o,
                          const char *text, size_t len, int prefix)
{
    size_t pos = 0;
    while (pos < len) {
        size_t end = pos;
        while (end < len && !((unsigned char)text[end] < 0x80 &&
                              t->isolated[(unsigned char)text[end]]))
            end++;
        if (end > pos || prefix) {
            int rc = tok_spm_segment(t, s, o, text + pos, end - pos, prefix);
            if (rc < 0) return rc;
        }
        prefix = 0;
        if (end < len) { /* an isolated ASCII char: never merged */
            int rc = tok_spm_emit_text(t, o, text + end, 1,
                                       tok_id(t, text + end, 1));
            if (rc < 0) return rc;
        }
        pos = end + 1;
    }
    return 0;
}

/* ---- BPE ----------------------------------------------------------------- */

static int tok_bpe_word(const tok *t, tok_scratch *s, tok_out *o,
                        const char *w, size_t len)
{
    int rc;
    if ((rc = tok_grow((void **)&s->buf, &s->buf_cap, 2 * len + 1, 1)) < 0 ||
        (rc = tok_grow((void **)&s->key, &s->key_cap, 2 * len + 2, 1)) < 0)
        return rc;
    size_t m = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char b = (unsigned char)w[i];
        memcpy(s->buf + m, t->b2u[b], t->b2u_len[b]);
        m += t->b2u_len[b];
    }
    if (t->ignore_merges) { /* a word that is a piece is emitted whole */
        int id = tok_id(t, s->buf, m);
        if (id >= 0) return tok_emit(o, id);
    }
    size_t n;
    if ((rc = tok_symbols(s, m, &n)) < 0) return rc;
    tok_merge_all(t, s, n);
    for (int32_t i = n ? 0 : -1; i >= 0; i = s->sym[i].next) {
        const char *p = s->buf + s->sym[i].off;
        size_t k = (size_t)s->sym[i].n;
        int id = tok_id(t, p, k);
        if (id >= 0) {
            if ((rc = tok_emit(o, id)) < 0) return rc;
            continue;
        }
        for (size_t j = 0; j < k; j++) { /* as llama.cpp: single bytes */
            int b = tok_id(t, p + j, 1);
            if (b >= 0 && (rc = tok_emit(o, b)) < 0) return rc;
        }
    }
    return 0;
}

typedef struct tok_bpe_ctx {
    const tok *t;
    tok_scratch *s;
    tok_out *o;
} tok_bpe_ctx;

static int tok_bpe_word_cb(void *ctx, const char *w, size_t n)
{
    tok_bpe_ctx *c = ctx;
    return tok_bpe_word(c->t, c->s, c->o, w, n);
}

/* ---- special pieces inside text, then the tokenizer per fragment -------- */

/* TEXT with every byte that starts no well-formed sequence replaced by
 * U+FFFD (malloc'ed; *out_len its length). */
static char *tok_utf8_replace(const char *text, size_t len, size_t *out_len)
{
    if (len > (SIZE_MAX - 1) / 3) return NULL;
    char *r = malloc(3 * len + 1);
    if (!r) return NULL;
    size_t m = 0, i = 0;
    while (i < len) {
        size_t k = tok_char_len((const unsigned char *)text + i, len - i);
        if (k == 0) {
            memcpy(r + m, "\xef\xbf\xbd", 3);
            m += 3;
            i++;
        } else {
            memcpy(r + m, text + i, k);
            m += k;
            i += k;
        }
    }
    *out_len = m;
    return r;
}

static int tok_encode_frags(const tok *t, tok_out *o, const char *text,
                            const toksp_frag *f, size_t n)
{
    tok_scratch s = {0};
    tok_bpe_ctx bc = {t, &s, o};
    int rc = 0, prev_special = 1;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const toksp_frag *x = &f[i];
        if (x->id >= 0) {
            rc = tok_emit(o, x->id);
            prev_special = 1;
        } else if (t->model == TOK_SPM) {
            rc = tok_encode_spm(t, &s, o, text + x->off, x->len,
                                prev_special && t->add_space_prefix);
            prev_special = 0;
        } else {
            rc = pretok_split(t->pre, text + x->off, x->len, tok_bpe_word_cb,
                              &bc);
        }
    }
    tok_scratch_free(&s);
    return rc;
}

int64_t tok_encode_ex(const tok *t, const char *text, size_t len,
                      unsigned flags, int32_t *ids, size_t cap,
                      size_t *bad_off)
{
    KVT_ASSERT(t != NULL);
    KVT_ASSERT(text != NULL || len == 0);
    KVT_ASSERT(ids != NULL || cap == 0);
    if (len > TOK_TEXT_MAX) return KVT_ERANGE;
    if (t->model == TOK_BPE && t->merges.n >= (1 << 24)) return KVT_ERANGE;
    size_t bad = tok_utf8_bad((const unsigned char *)text, len);
    char *fixed = NULL;
    if (bad < len) {
        if (!(flags & TOK_UTF8_REPLACE)) {
            if (bad_off) *bad_off = bad;
            return KVT_EUTF8;
        }
        if (t->model == TOK_BPE) { /* SPM: bad bytes become byte pieces */
            fixed = tok_utf8_replace(text, len, &len);
            if (!fixed) return -ENOMEM;
            text = fixed;
        }
    }
    tok_out o = {.ids = ids, .cap = cap};
    int rc = 0;
    if ((flags & TOK_ADD_BOS) && t->bos >= 0) rc = tok_emit(&o, t->bos);
    toksp_frag *f = NULL;
    size_t nf = 0;
    unsigned classes = TOKSP_USER |
                       ((flags & TOK_PARSE_SPECIAL) ? TOKSP_CONTROL : 0);
    if (rc == 0) rc = toksp_partition(t->special, text, len, classes, &f, &nf);
    if (rc == 0) rc = tok_encode_frags(t, &o, text, f, nf);
    if (rc == 0 && (flags & TOK_ADD_EOS) && t->eos >= 0)
        rc = tok_emit(&o, t->eos);
    free(f);
    free(fixed);
    return rc < 0 ? rc : (int64_t)o.n;
}

int64_t tok_encode(const tok *t, const char *text, size_t len, int add_bos,
                   int32_t *ids, size_t cap)
{
    return tok_encode_ex(t, text, len, add_bos ? TOK_ADD_BOS : 0, ids, cap,
                         NULL);
}

/* ---- decode -------------------------------------------------------------- */

static int tok_put(char *buf, size_t cap, size_t *n, const char *s, size_t k)
{
    if (k > cap - *n) return -ENOSPC;
    memcpy(buf + *n, s, k);
    *n += k;
    return 0;
}

static int tok_hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

static int tok_decode_spm(const char *p, size_t k, int type, char *buf,
                          size_t cap)
{
    size_t n = 0;
    if (type == TOK_T_BYTE && k == 6 && p[0] == '<' && p[1] == '0' &&
        p[2] == 'x' && tok_hexval(p[3]) >= 0 && tok_hexval(p[4]) >= 0) {
        char b = (char)(tok_hexval(p[3]) * 16 + tok_hexval(p[4]));
        return tok_put(buf, cap, &n, &b, 1) < 0 ? -ENOSPC : 1;
    }
    if (type == TOK_T_UNKNOWN)
        return tok_put(buf, cap, &n, "\xe2\x96\x85", 3) < 0 ? -ENOSPC : 3;
    for (size_t i = 0; i < k;) {
        int rc;
        if (type != TOK_T_USER && k - i >= 3 && memcmp(p + i, "\xe2\x96\x81",
                                                       3) == 0) {
            rc = tok_put(buf, cap, &n, " ", 1);
            i += 3;
        } else {
            rc = tok_put(buf, cap, &n, p + i, 1);
            i++;
        }
        if (rc < 0) return rc;
    }
    return (int)n;
}

static int tok_decode_bpe(const tok *t, const char *p, size_t k, int type,
                          char *buf, size_t cap)
{
    size_t n = 0;
    if (type == TOK_T_USER) return tok_put(buf, cap, &n, p, k) < 0
                                       ? -ENOSPC : (int)k;
    for (size_t i = 0; i < k;) {
        size_t l = KVT_MIN(k - i, tok_utf8_len((unsigned char)p[i]));
        unsigned cp = (unsigned char)p[i];
        if (l == 2)
            cp = ((cp & 0x1Fu) << 6) | ((unsigned char)p[i + 1] & 0x3Fu);
        int rc;
        if (l <= 2 && cp < 324 && t->u2b[cp] >= 0) {
            char b = (char)t->u2b[cp];
            rc = tok_put(buf, cap, &n, &b, 1);
        } else {
            rc = tok_put(buf, cap, &n, p + i, l); /* not byte-mapped: as is */
        }
        if (rc < 0) return rc;
        i += l;
    }
    return (int)n;
}

int tok_decode_piece(const tok *t, int id, char *buf, size_t cap)
{
    KVT_ASSERT(t != NULL);
    KVT_ASSERT(buf != NULL || cap == 0);
    if (id < 0 || id >= t->vocab.n) return 0;
    int type = t->type[id];
    if (type == TOK_T_CONTROL || type == TOK_T_UNUSED) return 0;
    const char *p = t->vocab.arena + t->vocab.off[id];
    size_t k = t->vocab.len[id];
    if (k > INT32_MAX) return -ENOSPC;
    return t->model == TOK_SPM ? tok_decode_spm(p, k, type, buf, cap)
                               : tok_decode_bpe(t, p, k, type, buf, cap);
}
