/* tok.c - SentencePiece-style BPE ("llama") and byte-level BPE ("gpt2")
 * tokenizers as llama.cpp's llm_tokenizer_spm / llm_tokenizer_bpe (see
 * tok.h): the vocabulary and its metadata, llama.cpp's defaults, the
 * special pieces, decoding. Encoding is in tok_encode.c.
 */
#include "engine/tok_int.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "base/kvt.h"

/* ---- string table: strings in one arena + open-addressing hash ---------- */

static uint64_t tok_hash(const char *s, size_t n) { return XXH3_64bits(s, n); }

/* Index of string S[0..n) or -1. */
int tok_tab_find(const tok_strtab *t, const char *s, size_t n)
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
    if (v < 0 || v >= n) return KVT_ERANGE;
    *out = (int)v;
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

int tok_id(const tok *t, const char *s, size_t n)
{
    return tok_tab_find(&t->vocab, s, n);
}

static int tok_hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* The byte of a piece "<0xHH>" (exactly two hex digits, either case), or
 * -1 if the piece is not of that form. */
static int tok_byte_piece(const char *p, size_t k)
{
    if (k != 6 || p[0] != '<' || p[1] != '0' || p[2] != 'x' || p[5] != '>') return -1;
    int hi = tok_hexval(p[3]), lo = tok_hexval(p[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

/* 1 if a piece looks like a byte piece, "<0x" ... ">" of at most 8 bytes. */
static int tok_byte_like(const char *p, size_t k)
{
    return k >= 4 && k <= 8 && memcmp(p, "<0x", 3) == 0 && p[k - 1] == '>';
}

/* Byte pieces (SPM): a piece of type BYTE must be "<0xHH>", and so must any
 * piece that looks like one ("<0x-1>", "<0xZZ>", "<0x1>" are refused rather
 * than taken as text); two pieces for one byte are refused. Fills byte_tok
 * from them. */
static int tok_check_bytes(tok *t, char *err, size_t cap)
{
    for (int b = 0; b < 256; b++) t->byte_tok[b] = -1;
    if (t->model != TOK_SPM) return 0;
    for (int i = 0; i < t->vocab.n; i++) {
        const char *p = t->vocab.arena + t->vocab.off[i];
        size_t k = t->vocab.len[i];
        int ty = t->type[i];
        if (ty != TOK_T_BYTE && (ty == TOK_T_USER || ty == TOK_T_CONTROL || !tok_byte_like(p, k)))
            continue;
        int b = tok_byte_piece(p, k);
        if (b < 0)
            return tok_fail(err, cap, KVT_EFORMAT, "tokenizer.ggml.tokens[%d]: byte piece "
                            "'%.*s' is not <0xHH>", i, (int)KVT_MIN(k, 16), p);
        if (t->byte_tok[b] >= 0)
            return tok_fail(err, cap, KVT_EFORMAT, "tokenizer.ggml.tokens[%d]: byte piece "
                            "'%.*s' repeats token %d", i, (int)k, p, t->byte_tok[b]);
        t->byte_tok[b] = i;
    }
    return 0;
}

static void tok_init_bytes(tok *t)
{
    for (int b = 0; b < 256; b++) {
        char buf[8];
        int id;
        if (t->model == TOK_BPE) {
            id = tok_id(t, t->b2u[b], t->b2u_len[b]);
        } else {
            id = t->byte_tok[b]; /* tok_check_bytes */
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
static int tok_load_specials(tok *t, const gguf *g, char *err, size_t cap)
{
    static const char pre[] = "tokenizer.ggml.", suf[] = "_token_id";
    int n = t->vocab.n, spm = t->model == TOK_SPM, rc;
    /* every tokenizer.ggml.*_token_id (padding, separator, cls, mask, eot,
     * fim ...) is checked: one outside the vocabulary is an error naming
     * the key (it would otherwise be dropped silently) */
    for (int i = 0; i < gguf_n_kv(g); i++) {
        const char *k = gguf_key(g, i);
        size_t kl = strlen(k);
        if (kl <= sizeof pre + sizeof suf - 2 || strncmp(k, pre, sizeof pre - 1) ||
            strcmp(k + kl - (sizeof suf - 1), suf))
            continue;
        int64_t v;
        if ((rc = gguf_get_int(g, k, &v)) < 0)
            return tok_fail(err, cap, rc, "%s is not an integer", k);
        if (v < 0 || v >= n)
            return tok_fail(err, cap, KVT_ERANGE, "%s = %lld is outside the vocabulary "
                            "(%d tokens)", k, (long long)v, n);
    }
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
        return tok_fail(err, cap, rc, "bad special token metadata");
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
    if ((rc = tok_load_specials(t, g, err, cap)) < 0) return rc;
    tok_mark_control(t, g);
    if ((rc = tok_init_special(t, g)) < 0) return rc;
    tok_init_byte_map(t);
    if ((rc = tok_check_bytes(t, err, cap)) < 0) return rc;
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

/* ---- decode -------------------------------------------------------------- */

static int tok_put(char *buf, size_t cap, size_t *n, const char *s, size_t k)
{
    if (k > cap - *n) return -ENOSPC;
    memcpy(buf + *n, s, k);
    *n += k;
    return 0;
}

static int tok_decode_spm(const char *p, size_t k, int type, char *buf,
                          size_t cap)
{
    size_t n = 0;
    if (type == TOK_T_BYTE && tok_byte_piece(p, k) >= 0) {
        char b = (char)tok_byte_piece(p, k);
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
