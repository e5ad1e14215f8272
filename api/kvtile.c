/* kvtile.c - libkvtile: version, errors, model, tokens, KV store, context,
 * evaluation (kvtile.h). Scoring and generation: run.c. */
#include "api/api_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "base/kvt.h"
#include "base/cpu.h"
#include "engine/generate.h"
#include "engine/select.h"
#include "io/io.h"
#include "kvstore/journal.h"
#include "kvstore/tile.h"

/* The public codes are the project's (base/kvt.h). */
_Static_assert((int)KVTILE_EFORMAT == (int)KVT_EFORMAT, "codes");
_Static_assert((int)KVTILE_EVERSION == (int)KVT_EVERSION, "codes");
_Static_assert((int)KVTILE_ETYPE == (int)KVT_ETYPE, "codes");
_Static_assert((int)KVTILE_EMISSING == (int)KVT_EMISSING, "codes");
_Static_assert((int)KVTILE_ESHAPE == (int)KVT_ESHAPE, "codes");
_Static_assert((int)KVTILE_EARCH == (int)KVT_EARCH, "codes");
_Static_assert((int)KVTILE_ECHECKSUM == (int)KVT_ECHECKSUM, "codes");
_Static_assert((int)KVTILE_EMODEL == (int)KVT_EMODEL, "codes");
_Static_assert((int)KVTILE_ETRUNC == (int)KVT_ETRUNC, "codes");
_Static_assert((int)KVTILE_EUTF8 == (int)KVT_EUTF8, "codes");
_Static_assert((int)KVTILE_ERANGE == (int)KVT_ERANGE, "codes");
_Static_assert((int)KVTILE_EUNSUPP == (int)KVT_EUNSUPP, "codes");
_Static_assert((int)KVTILE_EOTHERRUN == (int)KVT_EOTHERRUN, "codes");
_Static_assert(KVT_NERR == 13, "a new project code needs its KVTILE_ twin");

#define STR2(x) #x
#define STR(x) STR2(x)

KVTILE_API int kvtile_version(void) { return KVTILE_VERSION_NUMBER; }

KVTILE_API const char *kvtile_version_string(void)
{
    return STR(KVTILE_VERSION_MAJOR) "." STR(KVTILE_VERSION_MINOR) "." STR(KVTILE_VERSION_PATCH);
}

KVTILE_API const char *kvtile_strerror(int err) { return kvt_strerror(err); }

/* ---- model ---------------------------------------------------------------- */

KVTILE_API void kvtile_model_params_default(struct kvtile_model_params *p)
{
    memset(p, 0, sizeof *p);
}

KVTILE_API int kvtile_model_open(const char *path, const struct kvtile_model_params *p,
                                 kvtile_model **out, char *err, size_t err_cap)
{
    char e[512] = "";
    *out = NULL;
    kvtile_model *km = calloc(1, sizeof *km);
    if (!km) return -ENOMEM;
    int rc = model_open(path, &km->m, e, sizeof e);
    if (rc >= 0) {
        struct tok_params tp = { .pre = p ? p->pre_tokenizer : NULL };
        rc = tok_open_with(model_gguf(km->m), &tp, &km->tk, e, sizeof e);
    }
    if (rc < 0) {
        if (err && err_cap) snprintf(err, err_cap, "%s", e[0] ? e : kvt_strerror(rc));
        kvtile_model_close(km);
        return rc;
    }
    *out = km;
    return 0;
}

KVTILE_API void kvtile_model_close(kvtile_model *m)
{
    if (!m) return;
    tok_free(m->tk);
    model_close(m->m);
    free(m);
}

KVTILE_API void kvtile_model_info(const kvtile_model *m, struct kvtile_model_info *info)
{
    const struct model_hparams *hp = model_hparams(m->m);
    memset(info, 0, sizeof *info);
    snprintf(info->arch, sizeof info->arch, "%s", hp->arch_name);
    info->n_vocab = hp->n_vocab;
    info->n_ctx_train = hp->n_ctx_train;
    info->n_layer = hp->n_layer;
    info->n_embd = hp->n_embd;
    info->n_head = hp->n_head;
    info->n_head_kv = hp->n_head_kv;
    info->head_dim = hp->head_dim;
    info->bos = tok_bos(m->tk);
    info->eos = tok_eos(m->tk);
    info->add_bos = tok_add_bos(m->tk);
    snprintf(info->rope_scheme, sizeof info->rope_scheme, "%s", rope_scheme_name(hp->rope.scheme));
}

/* ---- tokens --------------------------------------------------------------- */

KVTILE_API size_t kvtile_tokenize_bound(size_t len) { return tok_encode_bound(len); }

KVTILE_API int64_t kvtile_tokenize(const kvtile_model *m, const char *text, size_t len,
                                   unsigned flags, int32_t *ids, size_t cap, size_t *bad_off)
{
    int special = flags & KVTILE_TOK_ADD_SPECIAL;
    unsigned fl = (special ? TOK_ADD_BOS : 0) |
                  (special && tok_add_eos(m->tk) ? TOK_ADD_EOS : 0) |
                  (flags & KVTILE_TOK_PARSE_SPECIAL ? TOK_PARSE_SPECIAL : 0) |
                  (flags & KVTILE_TOK_UTF8_REPLACE ? TOK_UTF8_REPLACE : 0);
    return tok_encode_ex(m->tk, text, len, fl, ids, cap, bad_off);
}

KVTILE_API int64_t kvtile_detokenize(const kvtile_model *m, const int32_t *ids, size_t n,
                                     char *buf, size_t cap)
{
    char piece[1024];
    int n_vocab = tok_n_vocab(m->tk);
    int64_t total = 0, kept = 0; /* bytes of the text, of it in buf */
    int full = cap == 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= n_vocab) return -EINVAL;
        int k = tok_decode_piece(m->tk, ids[i], piece, sizeof piece);
        if (k < 0) return k;
        if (!full && (size_t)kept + (size_t)k < cap) {
            memcpy(buf + kept, piece, (size_t)k);
            kept += k;
        } else {
            full = 1; /* whole pieces only */
        }
        total += k;
    }
    if (cap) buf[kept] = 0;
    return total;
}

KVTILE_API uint64_t kvtile_tokens_tag(const int32_t *ids, size_t n)
{
    uint64_t t = XXH3_64bits(ids, n * sizeof *ids);
    return t ? t : 1;
}

/* ---- KV store ------------------------------------------------------------- */

KVTILE_API void kvtile_store_params_default(struct kvtile_store_params *p)
{
    memset(p, 0, sizeof *p);
    p->disk = 1;
    p->keep = 1;
    p->open = KVTILE_STORE_CREATE;
    p->queue_depth = KVS_DEFAULT_QUEUE_DEPTH;
    p->tile_tokens = KVS_DEFAULT_TILE_TOKENS;
}

static int name_index(const char *const *names, int n, const char *v, int def)
{
    if (!v) return def;
    for (int i = 0; i < n; i++)
        if (!strcmp(names[i], v)) return i;
    return -EINVAL;
}

int api_store_config(const kvtile_model *m, const struct kvtile_store_params *p,
                     struct kvs_config *cfg)
{
    static const char *const types[] = { "f32", "f16", "bf16", "q8_0" };
    static const char *const ios[] = { "uring", "pread", "mmap" };
    _Static_assert(sizeof types / sizeof types[0] == KVS_NTYPES, "kv types");
    _Static_assert(sizeof ios / sizeof ios[0] == IO_NKINDS, "io kinds");
    const struct model_hparams *hp = model_hparams(m->m);
    int type = name_index(types, KVS_NTYPES, p->cache_type, KVS_F32);
    int io = name_index(ios, IO_NKINDS, p->io, IO_URING);
    int codec = p->codec ? tile_codec_parse(p->codec) : TILE_LZ4;
    if (type < 0 || io < 0 || codec < 0 || p->tile_tokens < 1 || p->tile_tokens > 65536 ||
        p->queue_depth < 1 || p->queue_depth > KVS_MAX_QUEUE_DEPTH)
        return -EINVAL;
    *cfg = (struct kvs_config){
        .n_layer = hp->n_layer, .kv_dim = hp->kv_dim, .tile_tokens = p->tile_tokens,
        .backing = p->disk ? KVS_DISK : KVS_RAM, .type = type, .codec = codec, .io = io,
        .queue_depth = p->queue_depth, .ram_budget_bytes = p->ram_budget,
    };
    model_kv_pairing(m->m, &cfg->head_dim, &cfg->neox_rot);
    model_fingerprint(m->m, cfg->model_fp);
    return 0;
}

KVTILE_API int kvtile_store_open(const kvtile_model *m, const struct kvtile_store_params *p,
                                 kvtile_store **out)
{
    struct kvtile_store_params def;
    if (!p) {
        kvtile_store_params_default(&def);
        p = &def;
    }
    *out = NULL;
    struct kvs_config cfg;
    int rc = api_store_config(m, p, &cfg);
    if (rc < 0) return rc;
    if (p->open < KVTILE_STORE_CREATE || p->open > KVTILE_STORE_ANY) return -EINVAL;
    kvtile_store *s = calloc(1, sizeof *s);
    if (!s) return -ENOMEM;
    if (p->disk) {
        if (p->path) {
            snprintf(s->path, sizeof s->path, "%s", p->path);
            s->keep = p->keep;
            cfg.reopen = p->open == KVTILE_STORE_REOPEN ||
                         (p->open == KVTILE_STORE_ANY && access(p->path, F_OK) == 0);
            if (p->open == KVTILE_STORE_REOPEN && access(p->path, F_OK) < 0) {
                free(s);
                return -ENOENT;
            }
        } else {
            const char *tmp = getenv("TMPDIR");
            snprintf(s->dir, sizeof s->dir, "%s/kvtile.XXXXXX", tmp && *tmp ? tmp : "/tmp");
            if (!mkdtemp(s->dir)) {
                rc = -errno;
                free(s);
                return rc;
            }
            s->tmp_dir = 1;
            snprintf(s->path, sizeof s->path, "%s/cache.kvt", s->dir);
        }
        cfg.path = s->path;
        cfg.ephemeral = !s->keep;
    }
    s->tile_tokens = cfg.tile_tokens;
    rc = kvs_open(&cfg, &s->kv);
    if (rc >= 0 && s->keep && !cfg.reopen) rc = jnl_fsync_dir(s->path); /* the file survives */
    /* a cache written before key summaries (or with damaged ones) */
    if (rc >= 0 && cfg.reopen && kvs_summary_missing(s->kv) > 0) {
        int64_t n = kvs_summary_rebuild(s->kv);
        rc = n < 0 ? (int)n : 0;
    }
    if (rc < 0) {
        /* remove nothing but a temporary directory of our own: the file
         * may be another handle's (-EBUSY) or a cache kept for later */
        s->keep = !s->tmp_dir;
        kvtile_store_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

KVTILE_API void kvtile_store_close(kvtile_store *s)
{
    if (!s) return;
    kvs_close(s->kv);
    if (s->path[0] && !s->keep) unlink(s->path);
    if (s->tmp_dir) rmdir(s->dir);
    free(s);
}

KVTILE_API int64_t kvtile_store_n_tokens(const kvtile_store *s) { return kvs_n_tokens(s->kv); }

KVTILE_API int kvtile_store_truncate(kvtile_store *s, int64_t n)
{
    if (n < 0 || n > kvs_n_tokens(s->kv)) return -EINVAL;
    return kvs_truncate(s->kv, n);
}

KVTILE_API int kvtile_store_reset(kvtile_store *s, uint64_t tag) { return kvs_reset(s->kv, tag); }
KVTILE_API uint64_t kvtile_store_tag(const kvtile_store *s) { return kvs_tag(s->kv); }
KVTILE_API int kvtile_store_sync(kvtile_store *s) { return kvs_sync(s->kv); }
KVTILE_API int64_t kvtile_store_file_bytes(const kvtile_store *s)
{
    return kvs_file_bytes(s->kv, NULL);
}

/* ---- context -------------------------------------------------------------- */

KVTILE_API void kvtile_ctx_params_default(struct kvtile_ctx_params *p)
{
    memset(p, 0, sizeof *p);
    p->n_threads = model_default_threads();
    p->n_batch = MODEL_DEFAULT_BATCH;
    p->tile_tokens = KVS_DEFAULT_TILE_TOKENS;
    p->rope_scale = -1;
    p->rope_freq_base = -1;
    p->yarn_beta_fast = -1;
    p->yarn_beta_slow = -1;
}

KVTILE_API int kvtile_ctx_create(const kvtile_model *m, const struct kvtile_ctx_params *p,
                                 kvtile_ctx **out)
{
    struct kvtile_ctx_params def;
    if (!p) {
        kvtile_ctx_params_default(&def);
        p = &def;
    }
    *out = NULL;
    if (p->n_threads < 1 || p->n_batch < 1 || p->tile_tokens < 1 || p->tile_tokens > 65536 || p->n_ctx < 0 || p->self_extend_group < 0 ||
        p->self_extend_window < 0 || (p->rotate_k_on_write && p->self_extend_group))
        return -EINVAL;
    kvtile_ctx *c = calloc(1, sizeof *c);
    if (!c) return -ENOMEM;
    c->m = m;
    c->n_ctx = p->n_ctx ? p->n_ctx : model_hparams(m->m)->n_ctx_train;
    c->grow = p->grow_positions || p->longrope_exact;
    c->exact = p->longrope_exact;
    c->mp = (struct model_ctx_params){
        .n_batch = p->n_batch, .n_threads = p->n_threads, .se_group = p->self_extend_group,
        .se_window = p->self_extend_window, .rotate_k_on_write = p->rotate_k_on_write,
    };
    int rc = 0;
    if (p->attend && sel_parse(p->attend, &c->mp.sel) < 0) rc = -EINVAL;
    if (rc >= 0 && p->kernels && (rc = cpu_set_parse(p->kernels)) >= 0) {
        c->mp.mm.cpu_set = rc;
        rc = cpu_set_supported(rc) ? 0 : KVT_EUNSUPP;
    }
    c->rp = model_hparams(m->m)->rope;
    struct rope_override ov = {
        .scheme = p->rope_scaling ? rope_scheme_parse(p->rope_scaling) : -1,
        .scale = p->rope_scale, .freq_base = p->rope_freq_base, .beta_fast = p->yarn_beta_fast,
        .beta_slow = p->yarn_beta_slow, .factors_long = p->longrope_factors,
        .n_factors = p->n_longrope_factors, .n_ctx = p->n_ctx,
    };
    if (rc >= 0 && p->rope_scaling && ov.scheme < 0) rc = -EINVAL;
    if (rc >= 0) rc = rope_params_override(&c->rp, &ov);
    c->mp.tile_tokens = p->tile_tokens;
    if (rc >= 0) rc = model_ctx_create(m->m, &c->mp, &c->mc);
    if (rc >= 0) rc = model_ctx_set_rope(c->mc, &c->rp, c->n_ctx);
    if (rc < 0) {
        kvtile_ctx_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

KVTILE_API void kvtile_ctx_free(kvtile_ctx *c)
{
    if (!c) return;
    model_ctx_free(c->mc);
    free(c);
}

KVTILE_API int kvtile_ctx_set_length(kvtile_ctx *c, int64_t seq_len)
{
    if (seq_len < 1) return -EINVAL;
    int rc = model_ctx_set_rope(c->mc, &c->rp, seq_len);
    return rc < 0 ? rc : 0;
}

KVTILE_API int kvtile_eval(kvtile_ctx *c, kvtile_store *s, const int32_t *ids, int n, int64_t pos0,
                           float *logits, int from)
{
    if (n < 1 || n > c->mp.n_batch || pos0 != kvs_n_tokens(s->kv) || from < 0 || from >= n ||
        s->tile_tokens != c->mp.tile_tokens)
        return -EINVAL;
    int n_vocab = model_hparams(c->m->m)->n_vocab;
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= n_vocab) return -EINVAL;
    return model_eval_rows(c->mc, s->kv, ids, n, pos0, logits, from);
}

KVTILE_API int kvtile_prefill(kvtile_ctx *c, kvtile_store *s, const int32_t *ids, int64_t n)
{
    int64_t from = kvs_n_tokens(s->kv);
    if (n < from || s->tile_tokens != c->mp.tile_tokens) return -EINVAL;
    int n_vocab = model_hparams(c->m->m)->n_vocab;
    for (int64_t i = from; i < n; i++)
        if (ids[i] < 0 || ids[i] >= n_vocab) return -EINVAL;
    struct gen_prefill_params pp = { .n_batch = c->mp.n_batch, .logits = GEN_LOGITS_NONE };
    return gen_prefill(c->mc, s->kv, ids, from, n, &pp);
}
