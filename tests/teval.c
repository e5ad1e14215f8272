/* teval.c - all logits of a token sequence from the engine (see teval.h). */
#include "teval.h"

#include "kvstore/kvs.h"

int t_engine_logits(const model *m, const int32_t *tokens, int n, int batch,
                    int tile, int threads, int se_g, int se_w, float *logits)
{
    const struct model_hparams *hp = model_hparams(m);
    struct model_ctx_params p = { .n_batch = batch, .n_threads = threads,
                                  .tile_tokens = tile, .se_group = se_g,
                                  .se_window = se_w };
    model_ctx *c;
    int rc = model_ctx_create(m, &p, &c);
    if (rc < 0) return rc;
    struct rope_params rp = hp->rope;
    struct kvs_config cfg = { .n_layer = hp->n_layer, .kv_dim = hp->kv_dim,
                              .tile_tokens = tile, .backing = KVS_RAM,
                              .type = KVS_F32 };
    kvs *kv = NULL;
    if ((rc = model_ctx_set_rope(c, &rp, n)) >= 0 && (rc = kvs_open(&cfg, &kv)) >= 0)
        for (int p0 = 0; p0 < n && rc >= 0; p0 += batch) {
            int nb = n - p0 < batch ? n - p0 : batch;
            rc = model_eval(c, kv, tokens + p0, nb, p0, logits + (size_t)p0 * hp->n_vocab, 1);
        }
    kvs_close(kv);
    model_ctx_free(c);
    return rc < 0 ? rc : 0;
}
