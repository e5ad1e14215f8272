/* model.h - a transformer read from a GGUF file, evaluated on the CPU.
 *
 * Data flow: tokens -> embeddings -> n_layer x { RMSNorm, Q/K/V,
 * positions (rope.h) on Q and on K as it is used, attention over the KV
 * store (attn.h <- kvs.h), output projection, RMSNorm, SwiGLU FFN } ->
 * RMSNorm -> logits.
 *
 * Architectures: "llama" (Llama 2/3, Mistral, TinyLlama, SmolLM: separate
 * q/k/v, adjacent-pair RoPE, GQA), "phi3" (fused attn_qkv, fused gate|up
 * ffn_up, NeoX RoPE, LongRoPE factors, sliding window), "qwen2" (q/k/v
 * biases, NeoX RoPE). Tied output when output.weight is absent.
 *
 * The model (weights, mapped) is read-only and shared; all per-evaluation
 * memory lives in a model_ctx allocated once for a maximum batch.
 */
#ifndef KVT_MODEL_H
#define KVT_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "gguf.h"
#include "pool.h"
#include "attn.h"
#include "matmul.h"
#include "rope.h"
#include "select.h"
#include "kvstore/kvs.h"

enum model_arch { ARCH_LLAMA, ARCH_PHI3, ARCH_QWEN2 };

struct model_hparams {
    int arch;               /* enum model_arch */
    char arch_name[32];
    int n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff, n_vocab;
    int kv_dim;             /* n_head_kv * head_dim */
    int64_t n_ctx_train;    /* {arch}.context_length */
    float rms_eps;
    int64_t sliding_window; /* 0 = none */
    struct rope_params rope; /* from metadata; CLI may override */
};

struct layer_weights {
    const gguf_tensor *attn_norm, *wq, *wk, *wv, *wqkv, *wo;
    const gguf_tensor *bq, *bk, *bv;                  /* qwen2 */
    const gguf_tensor *ffn_norm, *w_gate, *w_up, *w_down;
    int fused_gate_up;                                /* phi3 ffn_up */
};

typedef struct model model;

/* Open PATH: validate architecture, shapes and types of every tensor.
 * On failure returns < 0 with a one-line reason in err. */
int model_open(const char *path, model **out, char *err, size_t err_cap);
void model_close(model *m); /* NULL is a no-op */

const struct model_hparams *model_hparams(const model *m);
const gguf *model_gguf(const model *m);
const struct layer_weights *model_layer(const model *m, int il);

/* 32-byte fingerprint of the tensors (names, types, shapes, a hash of the
 * data) and hyper-parameters: binds KV caches to this model. */
void model_fingerprint(const model *m, uint8_t fp[32]);

/* ---- evaluation --------------------------------------------------------- */

typedef struct model_ctx model_ctx;

struct model_ctx_params {
    int n_batch;             /* max tokens per model_eval call */
    int n_threads;
    int tile_tokens;         /* attention block = KV tile size */
    int se_group, se_window; /* SelfExtend (0 = off) */
    int rotate_k_on_write;   /* 1: store K after rotation, with the table in
                                force when it was computed (llama.cpp's way;
                                for comparisons: positions can no longer
                                change for cached keys) */
    struct sel_policy sel;   /* decode-step tile selection (attn.h); the KV
                                store must pair its summaries as the model
                                rotates (model_kv_pairing) */
    struct mm_params mm;     /* kernel set (products and attention) and
                                GEMM paths; zero = defaults (KVT_CPU or the
                                host's best set, every path on) */
};

int model_ctx_create(const model *m, const struct model_ctx_params *p,
                     model_ctx **out);

/* The defaults every front end (CLI, library, generate loop) offers:
 * tokens per model_eval call, and one thread per online CPU. */
#define MODEL_DEFAULT_BATCH 512
int model_default_threads(void);

/* The rotation pairing a KV store for this model must use for its key
 * summaries (kvs_config.head_dim, .neox_rot). */
void model_kv_pairing(const model *m, int *head_dim, int *neox_rot);

/* What decode steps read so far (attn.h), all layers summed. */
void model_ctx_attn_stats(const model_ctx *c, struct attn_stats *st);
void model_ctx_free(model_ctx *c);

/* Positions for the coming evaluations: the scheme and the true sequence
 * length it is fixed for (rope_prepare). Can be called again as a sequence
 * grows (dynamic NTK, LongRoPE's switch to long factors): every cached key
 * is then rotated with the new table when it is next used. Also sizes
 * the decode-step tile selection (attn_reserve) for seq_len.
 * @return 1 if the rotation table changed, 0 if not, < 0 on error. */
int model_ctx_set_rope(model_ctx *c, const struct rope_params *rp,
                       int64_t seq_len);

/* Evaluate n tokens at positions pos0 .. pos0+n-1 (pos0 must equal the
 * tokens already in KV) and append their K/V to KV.
 * logits: (n, n_vocab) if all_logits, else (1, n_vocab) for the last token;
 * NULL to skip the output layer. @return 0 or a store error. */
int model_eval(model_ctx *c, kvs *kv, const int32_t *tokens, int n,
               int64_t pos0, float *logits, int all_logits);

/* The same, with logits only for tokens [from, n) of the call:
 * logits (n - from, n_vocab), row 0 = token `from` (0 <= from < n).
 * model_eval is from = 0 (all) or n - 1 (last). */
int model_eval_rows(model_ctx *c, kvs *kv, const int32_t *tokens, int n,
                    int64_t pos0, float *logits, int from);

#endif
