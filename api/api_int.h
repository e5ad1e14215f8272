/* api_int.h - what the files of api/ share (not installed). */
#ifndef KVT_API_INT_H
#define KVT_API_INT_H

#include "api/kvtile.h"
#include "engine/model.h"
#include "engine/rope.h"
#include "engine/tok.h"
#include "kvstore/kvs.h"

#define KVTILE_API __attribute__((visibility("default")))

struct kvtile_model {
    model *m;
    tok *tk;
};

struct kvtile_store {
    kvs *kv;
    char dir[4096], path[4352];
    int tmp_dir, keep;
    int tile_tokens;
};

struct kvtile_ctx {
    const kvtile_model *m;
    model_ctx *mc;
    struct model_ctx_params mp;
    struct rope_params rp;
    int64_t n_ctx;
    int grow, exact;
};

/* The kvs_config of a store of M with P (names resolved). @return 0 or
 * -EINVAL (an unknown name or a value out of range). */
int api_store_config(const kvtile_model *m, const struct kvtile_store_params *p,
                     struct kvs_config *cfg);

#endif
