/* cmd_info.c - `kvtile info MODEL`: what the file holds and what will be used.
 * A vocabulary-only file (no tensors) gets its tokenizer described. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "base/cpu.h"
#include "base/kvt.h"

static void print_tokenizer(const tok *tk)
{
    const char *pre = tok_pre_name(tk);
    printf("vocabulary      %d (BOS %d, EOS %d)\n", tok_n_vocab(tk), tok_bos(tk), tok_eos(tk));
    printf("tokenizer       %s%s, adds%s%s%s\n", pre ? "byte-level BPE, pre-tokenizer " : "SentencePiece BPE",
           pre ? pre : "", tok_add_bos(tk) ? " BOS" : "", tok_add_eos(tk) ? " EOS" : "",
           tok_add_bos(tk) || tok_add_eos(tk) ? "" : " nothing");
}

/* 1 if PATH is a GGUF without tensors (then its tokenizer was described). */
static int info_vocab_only(const char *path)
{
    gguf *g;
    char err[512] = "";
    int rc = gguf_open(path, &g, err, sizeof err);
    if (rc < 0) cli_die("%s: %s", path, err[0] ? err : kvt_strerror(rc));
    if (gguf_n_tensors(g) > 0) {
        gguf_close(g);
        return 0;
    }
    tok *tk = cli_open_tok(g, path);
    const char *arch = "";
    size_t n = 0;
    if (gguf_get_str(g, "general.architecture", &arch, &n) < 0) n = 0;
    printf("file            %s (GGUF v%u, %zu bytes, vocabulary only)\n", path, gguf_version(g), gguf_file_size(g));
    printf("architecture    %.*s\n", (int)KVT_MIN(n, 64), n ? arch : "");
    print_tokenizer(tk);
    tok_free(tk);
    gguf_close(g);
    return 1;
}

int cmd_info(int argc, char **argv)
{
    struct cli_opts o;
    cli_opts_default(&o);
    struct opt tab[] = {
        OPT_I64("--ctx", "-c", "N", &o.n_ctx, 1, 1e12, "context the positions are shown for",
                .def = "the trained context"),
        CLI_OPTS_POS(&o),
        CLI_OPT_PRE,
        OPT_END(),
    };
    const char *usage = "MODEL [-c N] [position options]";
    if (opt_parse("info", usage, tab, argc, argv, &o.model_path, 1) < 1) opt_usage("info", usage);
    if (info_vocab_only(o.model_path)) return 0;
    model *m;
    tok *tk;
    cli_load(o.model_path, &m, &tk);
    const struct model_hparams *hp = model_hparams(m);
    const gguf *g = model_gguf(m);
    if (o.n_ctx == 0) o.n_ctx = hp->n_ctx_train;
    struct rope_params rp;
    cli_rope_params(&o, m, &rp);
    struct rope_table rt;
    int rc = rope_prepare(&rp, o.n_ctx, &rt);
    if (rc < 0) cli_die("%s: positions: %s", o.model_path, kvt_strerror(rc));

    uint64_t n_params = 0, n_bytes = 0;
    int type_count[GGML_TYPE_COUNT] = {0};
    for (int i = 0; i < gguf_n_tensors(g); i++) {
        const gguf_tensor *t = gguf_tensor_at(g, i);
        n_params += (uint64_t)(t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3]);
        n_bytes += t->size;
        if (t->type >= 0 && t->type < GGML_TYPE_COUNT) type_count[t->type]++;
    }
    uint8_t fp[32];
    model_fingerprint(m, fp);
    printf("file            %s (GGUF v%u, %zu bytes)\n", o.model_path, gguf_version(g), gguf_file_size(g));
    printf("architecture    %s\n", hp->arch_name);
    printf("layers          %d\n", hp->n_layer);
    printf("embedding       %d\n", hp->n_embd);
    printf("heads           %d (KV heads %d, head size %d, KV dim %d)\n", hp->n_head, hp->n_head_kv, hp->head_dim, hp->kv_dim);
    printf("feed-forward    %d\n", hp->n_ff);
    print_tokenizer(tk);
    printf("context         %lld trained\n", (long long)hp->n_ctx_train);
    if (hp->sliding_window) printf("sliding window  %lld\n", (long long)hp->sliding_window);
    printf("parameters      %llu (%.1f MiB of tensors, %d tensors)\n", (unsigned long long)n_params, (double)n_bytes / 1048576.0, gguf_n_tensors(g));
    printf("tensor types   ");
    for (int t = 0; t < GGML_TYPE_COUNT; t++)
        if (type_count[t]) printf(" %s x%d", ggml_type_name(t), type_count[t]);
    printf("\n");
    printf("rope            %s, %s pairs, %d dims rotated, base %.1f\n", rope_scheme_name(rp.scheme), rp.neox ? "NeoX half-split" : "adjacent", rp.n_rot, rp.freq_base);
    printf("rope scaling    factor %.4g, original context %lld, magnitude %.6f at %lld tokens\n", rp.scale, (long long)rp.orig_ctx, rt.mscale, (long long)o.n_ctx);
    if (rp.scheme == ROPE_YARN)
        printf("yarn            beta_fast %.3g, beta_slow %.3g, ext_factor %.3g\n", rp.beta_fast, rp.beta_slow, rp.ext_factor);
    if (rp.have_factors) {
        printf("longrope        %s factors at %lld tokens\n", rt.long_factors ? "long" : "short", (long long)o.n_ctx);
        for (int set = 0; set < 2; set++) {
            const float *f = set ? rp.factors_long : rp.factors_short;
            printf("  %s:", set ? "long " : "short");
            for (int i = 0; i < rp.n_rot / 2; i++) printf(" %.6g", f[i]);
            printf("\n");
        }
    }
    if (rp.have_freq_factors) {
        printf("rope_freqs     ");
        for (int i = 0; i < rp.n_rot / 2; i++) printf(" %.6g", rp.freq_factors[i]);
        printf("\n");
    }
    if (o.se_group) printf("self-extend     group %d, window %d\n", o.se_group, o.se_window);
    char cpu[256];
    cpu_describe(cpu, sizeof cpu);
    printf("cpu             %s\n", cpu);
    printf("fingerprint     ");
    for (int i = 0; i < 32; i++) printf("%02x", fp[i]);
    printf("\n");
    tok_free(tk);
    model_close(m);
    return 0;
}
