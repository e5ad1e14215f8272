/* pretok.c - pre-tokenizer table and the chunk splitter (see pretok.h).
 *
 * The regex strings are the ones llama.cpp (src/llama-vocab.cpp, commit
 * c392e50) uses for each tokenizer.ggml.pre name; they are data, written
 * out here. The splitter is our own: PCRE2 (JIT when available) over each
 * chunk in turn, recursing into the next regex for every match and gap.
 */
#include "engine/pretok.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "base/kvt.h"

#define PRETOK_MAX_RE 6

/* GPT-2's split, as llama.cpp lists it (its final "|\\s+" is the gap). */
#define RE_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"
/* Llama 3's split with (?i:'s|...) spelled out in ASCII cases. */
#define RE_LLAMA3_HEAD "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
#define RE_LLAMA3_TAIL "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_BLOOM " ?[^(\\s|.,!?…。，、।۔،)]+"

typedef struct pretok_family {
    const char *name;               /* canonical name */
    const char *re[PRETOK_MAX_RE];  /* NULL-terminated */
} pretok_family;

enum {
    F_DEFAULT, F_GPT2, F_LLAMA3, F_QWEN2, F_DEEPSEEK_LLM, F_DEEPSEEK_CODER,
    F_DEEPSEEK_V3, F_FALCON, F_STARCODER, F_BLOOM, F_VIKING, F_TEKKEN,
    F_CHAMELEON, F_COUNT
};

static const pretok_family families[F_COUNT] = {
    [F_DEFAULT] = {"default", {"[\\p{P}\\$\\+<=>\\^~\\|]+", RE_GPT2, "\\p{N}+",
                               "[0-9][0-9][0-9]"}},
    [F_GPT2] = {"gpt-2", {RE_GPT2}},
    [F_LLAMA3] = {"llama-bpe", {RE_LLAMA3_HEAD "\\p{N}{1,3}" RE_LLAMA3_TAIL}},
    [F_QWEN2] = {"qwen2", {RE_LLAMA3_HEAD "\\p{N}" RE_LLAMA3_TAIL}},
    [F_DEEPSEEK_LLM] = {"deepseek-llm", {
        "[\r\n]",
        "\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-ώᾀ-ᾴᾶ-ᾼιῂ-ῄῆ-ῌῐ-ΐῖ-Ίῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤΩℨK-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+",
        "\\s?[!-/:-~！-／：-～‘-‟　-。]+",
        "\\s+$",
        "[一-龥ࠀ-一가-퟿]+",
        "\\p{N}+"}},
    [F_DEEPSEEK_CODER] = {"deepseek-coder", {
        "[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", "[一-龥ࠀ-一가-퟿]+", "\\p{N}"}},
    [F_DEEPSEEK_V3] = {"deepseek-v3", {
        "\\p{N}{1,3}",
        "[一-龥぀-ゟ゠-ヿ]+",
        "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+"
        "| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"}},
    [F_FALCON] = {"falcon", {"[\\p{P}\\$\\+<=>\\^~\\|`]+", RE_GPT2, "[0-9][0-9][0-9]"}},
    [F_STARCODER] = {"starcoder", {"\\p{N}", RE_GPT2}},
    [F_BLOOM] = {"bloom", {RE_BLOOM}},
    [F_VIKING] = {"viking", {RE_BLOOM, "\\p{N}"}},
    [F_TEKKEN] = {"tekken", {
        "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+"
        "|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*"
        "|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}},
    [F_CHAMELEON] = {"chameleon", {
        "<sentinel:[0-9]+>",
        "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z",
        "([\\t\\n]|    |  )",
        "\\p{N}",
        "[\\p{P}!-/:-@\\[-`{-~]",
        RE_GPT2}},
};

/* Every accepted name: its family and flags (llama.cpp's mapping). */
static const struct pretok_alias {
    const char *name;
    int family;
    unsigned flags;
} aliases[] = {
    {"default", F_DEFAULT, 0},
    {"llama-bpe", F_LLAMA3, PRETOK_IGNORE_MERGES | PRETOK_ADD_BOS},
    {"llama3", F_LLAMA3, PRETOK_IGNORE_MERGES | PRETOK_ADD_BOS},
    {"llama-v3", F_LLAMA3, PRETOK_IGNORE_MERGES | PRETOK_ADD_BOS},
    {"falcon3", F_LLAMA3, PRETOK_IGNORE_MERGES | PRETOK_ADD_BOS},
    {"dbrx", F_LLAMA3, 0},
    {"smaug-bpe", F_LLAMA3, 0},
    {"chatglm-bpe", F_LLAMA3, PRETOK_NO_BOS},
    {"qwen2", F_QWEN2, 0},
    {"deepseek-r1-qwen", F_QWEN2, 0},
    {"megrez", F_QWEN2, 0},
    {"stablelm2", F_QWEN2, 0},
    {"deepseek-llm", F_DEEPSEEK_LLM, 0},
    {"deepseek-coder", F_DEEPSEEK_CODER, 0},
    {"deepseek-v3", F_DEEPSEEK_V3, 0},
    {"falcon", F_FALCON, 0},
    {"gpt-2", F_GPT2, 0},
    {"phi-2", F_GPT2, 0},
    {"mpt", F_GPT2, 0},
    {"olmo", F_GPT2, 0},
    {"jais", F_GPT2, 0},
    {"jina-es", F_GPT2, 0},
    {"jina-de", F_GPT2, 0},
    {"jina-v1-en", F_GPT2, 0},
    {"jina-v2-es", F_GPT2, 0},
    {"jina-v2-de", F_GPT2, 0},
    {"jina-v2-code", F_GPT2, 0},
    {"gigachat", F_GPT2, 0},
    {"roberta-bpe", F_GPT2, 0},
    {"starcoder", F_STARCODER, 0},
    {"refact", F_STARCODER, 0},
    {"command-r", F_STARCODER, 0},
    {"smollm", F_STARCODER, 0},
    {"codeshell", F_STARCODER, 0},
    {"exaone", F_STARCODER, 0},
    {"minerva-7b", F_STARCODER, 0},
    {"bloom", F_BLOOM, 0},
    {"poro-chat", F_BLOOM, 0},
    {"gpt3-finnish", F_BLOOM, 0},
    {"viking", F_VIKING, 0},
    {"tekken", F_TEKKEN, PRETOK_IGNORE_MERGES | PRETOK_ADD_BOS},
    {"chameleon", F_CHAMELEON, PRETOK_ADD_BOS},
};
#define N_ALIASES (sizeof aliases / sizeof aliases[0])

struct pretok {
    const pretok_family *fam;
    unsigned flags;
    int n_re;
    pcre2_code *re[PRETOK_MAX_RE];
};

const char *const *pretok_names(void)
{
    static const char *names[N_ALIASES + 1];
    for (size_t i = 0; i < N_ALIASES; i++) names[i] = aliases[i].name;
    names[N_ALIASES] = NULL;
    return names;
}

void pretok_free(pretok *p)
{
    if (!p) return;
    for (int i = 0; i < p->n_re; i++) pcre2_code_free(p->re[i]);
    free(p);
}

int pretok_open(const char *name, size_t len, pretok **out, char *err,
                size_t err_cap)
{
    *out = NULL;
    const struct pretok_alias *a = NULL;
    for (size_t i = 0; i < N_ALIASES && !a; i++)
        if (strlen(aliases[i].name) == len &&
            memcmp(aliases[i].name, name, len) == 0)
            a = &aliases[i];
    if (!a) {
        if (err && err_cap)
            snprintf(err, err_cap, "unknown pre-tokenizer '%.*s' "
                     "(tokenizer.ggml.pre; see README, Tokenizers)",
                     (int)KVT_MIN(len, 64), name);
        return KVT_EUNSUPP;
    }
    pretok *p = calloc(1, sizeof *p);
    if (!p) return -ENOMEM;
    p->fam = &families[a->family];
    p->flags = a->flags;
    for (int i = 0; i < PRETOK_MAX_RE && p->fam->re[i]; i++) {
        int ec;
        PCRE2_SIZE eo;
        p->re[i] = pcre2_compile((PCRE2_SPTR)p->fam->re[i],
                                 PCRE2_ZERO_TERMINATED,
                                 PCRE2_UTF | PCRE2_UCP | PCRE2_DOLLAR_ENDONLY,
                                 &ec, &eo, NULL);
        KVT_ASSERT(p->re[i] != NULL); /* the table is ours */
        p->n_re = i + 1;
        (void)pcre2_jit_compile(p->re[i], PCRE2_JIT_COMPLETE); /* optional */
    }
    *out = p;
    return 0;
}

const char *pretok_name(const pretok *p) { return p->fam->name; }
unsigned pretok_flags(const pretok *p) { return p->flags; }

const char *const *pretok_regexes(const pretok *p, int *n)
{
    *n = p->n_re;
    return p->fam->re;
}

/* UTF-8 sequence length from its lead byte (the text is valid). */
static size_t pretok_char_len(unsigned char c)
{
    return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
}

typedef struct pretok_run {
    const pretok *p;
    pcre2_match_data *md[PRETOK_MAX_RE];
    pretok_word_fn word;
    void *ctx;
} pretok_run;

/* Split S[0..n) with regex LEVEL and hand every match and gap to the next
 * level (or to the word callback after the last). */
static int pretok_level(pretok_run *r, int level, const char *s, size_t n)
{
    if (n == 0) return 0;
    if (level == r->p->n_re) return r->word(r->ctx, s, n);
    pcre2_code *re = r->p->re[level];
    pcre2_match_data *md = r->md[level];
    size_t pos = 0, done = 0; /* done: end of the last chunk handed on */
    int rc = 0;
    while (pos < n && rc == 0) {
        int m = pcre2_match(re, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK,
                            md, NULL);
        if (m == PCRE2_ERROR_NOMATCH) break;
        if (m < 0) return KVT_EUNSUPP; /* e.g. match limit */
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t a = ov[0], b = ov[1];
        if (b == a) { /* empty match: no chunk; step one character */
            pos = a + (a < n ? pretok_char_len((unsigned char)s[a]) : 1);
            continue;
        }
        if (a > done) rc = pretok_level(r, level + 1, s + done, a - done);
        if (rc == 0) rc = pretok_level(r, level + 1, s + a, b - a);
        done = pos = b;
    }
    if (rc == 0 && done < n) rc = pretok_level(r, level + 1, s + done, n - done);
    return rc;
}

int pretok_split(const pretok *p, const char *text, size_t len,
                 pretok_word_fn word, void *ctx)
{
    KVT_ASSERT(p != NULL);
    pretok_run r = {.p = p, .word = word, .ctx = ctx};
    int rc = 0;
    for (int i = 0; i < p->n_re && rc == 0; i++) {
        r.md[i] = pcre2_match_data_create_from_pattern(p->re[i], NULL);
        if (!r.md[i]) rc = -ENOMEM;
    }
    if (rc == 0) rc = pretok_level(&r, 0, text, len);
    for (int i = 0; i < p->n_re; i++) pcre2_match_data_free(r.md[i]);
    return rc;
}
