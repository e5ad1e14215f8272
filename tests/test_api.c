/* test_api: the contracts of api/kvtile.h, against the CLI (tokenize,
 * generate, ppl) and the engine's plain evaluation (tests/teval.c). */
#include <errno.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/kvtile.h"
#include "engine/model.h"
#include "t.h"
#include "teval.h"
#include "tproc.h"

static const char *MODEL = "models/tiny-kjv-f32.gguf";
static const char *MODEL_F16 = "models/tiny-kjv-f16.gguf";
static const char *TEXT = "tests/data/kjv-nt.txt";

static kvtile_model *open_model(const char *path)
{
    kvtile_model *m = NULL;
    char err[256];
    int rc = kvtile_model_open(path, NULL, &m, err, sizeof err);
    if (rc < 0) fprintf(stderr, "  %s: %s\n", path, err);
    return m;
}

static void test_version_errors(void)
{
    T_CHECK(kvtile_version() == KVTILE_VERSION_NUMBER);
    char v[32];
    snprintf(v, sizeof v, "%d.%d.%d", KVTILE_VERSION_MAJOR, KVTILE_VERSION_MINOR,
             KVTILE_VERSION_PATCH);
    T_CHECK(!strcmp(kvtile_version_string(), v));
    T_CHECK(!strcmp(kvtile_strerror(KVTILE_EMODEL), "cache was built by another model"));
    T_CHECK(!strcmp(kvtile_strerror(-ENOENT), strerror(ENOENT)));
    kvtile_model *m = (kvtile_model *)1;
    char err[256] = "";
    T_CHECK(kvtile_model_open("/nonexistent/x.gguf", NULL, &m, err, sizeof err) == -ENOENT);
    T_CHECK(m == NULL && err[0] != 0);
    /* not a GGUF file: an error and its reason */
    err[0] = 0;
    T_CHECK(kvtile_model_open(TEXT, NULL, &m, err, sizeof err) < 0);
    T_CHECK(m == NULL && err[0] != 0);
    kvtile_model_close(NULL);
    kvtile_store_close(NULL);
    kvtile_ctx_free(NULL);
}

static void test_tokens(void)
{
    T_REQUIRE(access(MODEL, R_OK) == 0, MODEL);
    kvtile_model *m = open_model(MODEL);
    T_CHECK(m != NULL);
    if (!m) return;
    struct kvtile_model_info info;
    kvtile_model_info(m, &info);
    /* against `kvtile info` */
    char out[8192];
    T_CHECK(t_run("info models/tiny-kjv-f32.gguf", out, sizeof out, NULL, 0) == 0);
    char want[64];
    snprintf(want, sizeof want, "%d", info.n_vocab);
    T_CHECK(strstr(out, want) != NULL && strstr(out, info.arch) != NULL);
    T_CHECK(info.n_ctx_train > 0 && info.add_bos == 1 && info.bos >= 0);
    /* against `kvtile tokenize` */
    const char *text = "In the beginning God created the heaven and the earth.";
    T_CHECK(t_run("tokenize models/tiny-kjv-f32.gguf 'In the beginning God created the heaven "
                  "and the earth.'", out, sizeof out, NULL, 0) == 0);
    int32_t ids[64];
    int64_t n = kvtile_tokenize(m, text, strlen(text), KVTILE_TOK_ADD_SPECIAL, ids, 64, NULL);
    T_CHECK(n > 5 && ids[0] == info.bos);
    char got[1024];
    size_t w = 0;
    for (int64_t i = 0; i < n; i++) w += (size_t)snprintf(got + w, sizeof got - w, "%s%d", i ? " " : "", ids[i]);
    out[strcspn(out, "\n")] = 0;
    T_CHECK(!strcmp(got, out));
    /* too small a buffer; invalid UTF-8 and its offset, or replaced */
    T_CHECK(kvtile_tokenize(m, text, strlen(text), 0, ids, 2, NULL) == -ENOSPC);
    size_t bad = 0;
    T_CHECK(kvtile_tokenize(m, "ab\xff", 3, 0, ids, 64, &bad) == KVTILE_EUTF8 && bad == 2);
    T_CHECK(kvtile_tokenize(m, "ab\xff", 3, KVTILE_TOK_UTF8_REPLACE, ids, 64, NULL) > 0);
    /* detokenize: the text back (without BOS), and the size needed */
    n = kvtile_tokenize(m, text, strlen(text), 0, ids, 64, NULL);
    char buf[256];
    int64_t len = kvtile_detokenize(m, ids, (size_t)n, buf, sizeof buf);
    T_CHECK(len >= (int64_t)strlen(text) && strstr(buf, "the heaven and the earth.") != NULL);
    T_CHECK((int64_t)strlen(buf) == len);
    char small[8];
    T_CHECK(kvtile_detokenize(m, ids, (size_t)n, small, sizeof small) == len);
    T_CHECK(strlen(small) < sizeof small && !strncmp(small, buf, strlen(small)));
    int32_t bad_id = info.n_vocab;
    T_CHECK(kvtile_detokenize(m, &bad_id, 1, buf, sizeof buf) == -EINVAL);
    T_CHECK(kvtile_tokens_tag(ids, (size_t)n) != 0);
    T_CHECK(kvtile_tokens_tag(ids, (size_t)n) != kvtile_tokens_tag(ids, (size_t)n - 1));
    kvtile_model_close(m);
}

/* kvtile_eval's logits equal the engine's plain evaluation; its checks. */
static void test_eval(void)
{
    T_REQUIRE(access(MODEL, R_OK) == 0, MODEL);
    kvtile_model *m = open_model(MODEL);
    if (!m) return;
    struct kvtile_model_info info;
    kvtile_model_info(m, &info);
    enum { N = 40 };
    int32_t ids[N];
    const char *text = "And the earth was without form, and void; and darkness was upon the face";
    int64_t n = kvtile_tokenize(m, text, strlen(text), KVTILE_TOK_ADD_SPECIAL, ids, N, NULL);
    T_CHECK(n > 10);
    size_t V = (size_t)info.n_vocab;
    float *ref = malloc((size_t)n * V * sizeof *ref), *got = malloc((size_t)n * V * sizeof *got);
    model *em;
    char err[256];
    T_CHECK(model_open(MODEL, &em, err, sizeof err) == 0);
    T_CHECK(t_engine_logits(em, ids, (int)n, 8, 256, 2, 0, 0, ref) == 0);
    model_close(em);
    struct kvtile_ctx_params cp;
    kvtile_ctx_params_default(&cp);
    cp.n_batch = 8;
    cp.n_threads = 2;
    kvtile_ctx *c;
    T_CHECK(kvtile_ctx_create(m, &cp, &c) == 0);
    struct kvtile_store_params sp;
    kvtile_store_params_default(&sp);
    sp.disk = 0;
    kvtile_store *s;
    T_CHECK(kvtile_store_open(m, &sp, &s) == 0);
    /* the contract's refusals */
    T_CHECK(kvtile_eval(c, s, ids, 9, 0, got, 0) == -EINVAL);     /* > n_batch */
    T_CHECK(kvtile_eval(c, s, ids, 4, 1, got, 0) == -EINVAL);     /* pos0 != n_tokens */
    T_CHECK(kvtile_eval(c, s, ids, 4, 0, got, 4) == -EINVAL);     /* from >= n */
    for (int64_t p0 = 0; p0 < n; p0 += 8) {
        int nb = (int)(n - p0 < 8 ? n - p0 : 8);
        T_CHECK(kvtile_eval(c, s, ids + p0, nb, p0, got + (size_t)p0 * V, 0) == 0);
    }
    T_CHECK(kvtile_store_n_tokens(s) == n);
    T_CHECK(memcmp(ref, got, (size_t)n * V * sizeof *got) == 0);
    /* truncate and evaluate the same batch again: the same logits, from
     * row FROM on */
    T_CHECK(kvtile_store_truncate(s, n + 1) == -EINVAL);
    T_CHECK(kvtile_store_truncate(s, 8) == 0 && kvtile_store_n_tokens(s) == 8);
    T_CHECK(kvtile_eval(c, s, ids + 8, 8, 8, got, 5) == 0);
    T_CHECK(memcmp(ref + 13 * V, got, 3 * V * sizeof *got) == 0);
    kvtile_store_close(s);
    kvtile_ctx_free(c);
    free(ref);
    free(got);
    kvtile_model_close(m);
}

static void test_ctx_and_store_errors(void)
{
    T_REQUIRE(access(MODEL, R_OK) == 0 && access(MODEL_F16, R_OK) == 0, MODEL_F16);
    kvtile_model *m = open_model(MODEL), *m16 = open_model(MODEL_F16);
    if (!m || !m16) return;
    struct kvtile_ctx_params cp;
    kvtile_ctx *c = (kvtile_ctx *)1;
    kvtile_ctx_params_default(&cp);
    cp.rope_scaling = "bogus";
    T_CHECK(kvtile_ctx_create(m, &cp, &c) == -EINVAL && c == NULL);
    kvtile_ctx_params_default(&cp);
    cp.rope_scaling = "longrope"; /* the model has no factors */
    T_CHECK(kvtile_ctx_create(m, &cp, &c) == KVTILE_ERANGE);
    kvtile_ctx_params_default(&cp);
    cp.kernels = "sse9";
    T_CHECK(kvtile_ctx_create(m, &cp, &c) == -EINVAL);
    kvtile_ctx_params_default(&cp);
    cp.attend = "top:";
    T_CHECK(kvtile_ctx_create(m, &cp, &c) == -EINVAL);

    char dir[256], path[300];
    T_CHECK(t_tmpdir(dir, sizeof dir) != NULL);
    snprintf(path, sizeof path, "%s/c.kvt", dir);
    struct kvtile_store_params sp;
    kvtile_store_params_default(&sp);
    sp.path = path;
    kvtile_store *s = (kvtile_store *)1;
    sp.codec = "zip";
    T_CHECK(kvtile_store_open(m, &sp, &s) == -EINVAL && s == NULL);
    sp.codec = NULL;
    sp.open = KVTILE_STORE_REOPEN;
    T_CHECK(kvtile_store_open(m, &sp, &s) == -ENOENT);
    /* a kept cache: tokens and tag survive close; another model is refused */
    sp.open = KVTILE_STORE_ANY;
    sp.cache_type = "f16";
    T_CHECK(kvtile_store_open(m, &sp, &s) == 0);
    kvtile_ctx_params_default(&cp);
    T_CHECK(kvtile_ctx_create(m, &cp, &c) == 0);
    int32_t ids[300];
    for (int i = 0; i < 300; i++) ids[i] = 100 + i;
    T_CHECK(kvtile_store_reset(s, 77) == 0);
    T_CHECK(kvtile_prefill(c, s, ids, 300) == 0);
    T_CHECK(kvtile_store_sync(s) == 0 && kvtile_store_file_bytes(s) > 0);
    kvtile_store_close(s);
    T_CHECK(kvtile_store_open(m, &sp, &s) == 0);
    T_CHECK(kvtile_store_n_tokens(s) == 300 && kvtile_store_tag(s) == 77);
    T_CHECK(kvtile_prefill(c, s, ids, 299) == -EINVAL); /* less than it holds */
    T_CHECK(kvtile_store_open(m, &sp, &(kvtile_store *){ NULL }) == -EBUSY);
    sp.open = KVTILE_STORE_CREATE; /* refused too, and the file left alone */
    T_CHECK(kvtile_store_open(m, &sp, &(kvtile_store *){ NULL }) == -EBUSY);
    T_CHECK(access(path, F_OK) == 0);
    sp.open = KVTILE_STORE_ANY;
    kvtile_store_close(s);
    T_CHECK(kvtile_store_open(m16, &sp, &s) == KVTILE_EMODEL);
    T_CHECK(access(path, F_OK) == 0); /* a refused cache is left alone */
    /* a temporary store leaves nothing */
    struct kvtile_store_params tp;
    kvtile_store_params_default(&tp);
    char tmpenv[300];
    snprintf(tmpenv, sizeof tmpenv, "%s/t", dir);
    T_CHECK(mkdir(tmpenv, 0700) == 0);
    setenv("TMPDIR", tmpenv, 1);
    T_CHECK(kvtile_store_open(m, &tp, &s) == 0);
    T_CHECK(t_dir_entries(tmpenv) == 1);
    kvtile_store_close(s);
    T_CHECK(t_dir_entries(tmpenv) == 0);
    unsetenv("TMPDIR");
    kvtile_ctx_free(c);
    kvtile_model_close(m);
    kvtile_model_close(m16);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    T_CHECK(t_sh(cmd, NULL, 0, NULL, 0) == 0);
}

/* The text `kvtile generate` prints in "text" (escapes \n \" \\ only). */
static int cli_text(const char *json, char *out, size_t cap)
{
    const char *p = strstr(json, "\"text\": \"");
    if (!p) return -1;
    size_t n = 0;
    for (p += 9; *p && *p != '"' && n + 1 < cap; p++) {
        if (*p == '\\') {
            p++;
            if (*p == 'n') out[n++] = '\n';
            else if (*p == '"' || *p == '\\') out[n++] = *p;
            else return -1;
        } else {
            out[n++] = *p;
        }
    }
    out[n] = 0;
    return *p == '"' ? 0 : -1;
}

static int on_token(void *user, int32_t id, const char *piece, int len)
{
    (void)id;
    (void)piece;
    (void)len;
    return ++*(int *)user == 5 ? 1 : 0; /* stop after the fifth */
}

static void test_generate(void)
{
    T_REQUIRE(access(MODEL, R_OK) == 0, MODEL);
    kvtile_model *m = open_model(MODEL);
    if (!m) return;
    char out[8192], want[512], got[512];
    T_CHECK(t_run("generate models/tiny-kjv-f32.gguf -p 'And God said' -n 12 --json -q", out,
                  sizeof out, NULL, 0) == 0);
    T_CHECK(cli_text(out, want, sizeof want) == 0);
    int32_t ids[80];
    int64_t n = kvtile_tokenize(m, "And God said", 12, KVTILE_TOK_ADD_SPECIAL, ids, 80, NULL);
    kvtile_ctx *c;
    kvtile_store *s;
    T_CHECK(kvtile_ctx_create(m, NULL, &c) == 0 && kvtile_store_open(m, NULL, &s) == 0);
    struct kvtile_gen_params gp;
    kvtile_gen_params_default(&gp);
    gp.n_predict = 12;
    struct kvtile_gen_result r;
    int64_t len = kvtile_generate(c, s, ids, n, &gp, got, sizeof got, &r);
    T_CHECK(len == (int64_t)strlen(want) && !strcmp(got, want));
    if (strcmp(got, want)) fprintf(stderr, "  api '%s' cli '%s'\n", got, want);
    T_CHECK(r.n_prefill == n && r.n_out <= 12);
    T_CHECK(kvtile_store_n_tokens(s) == n + r.n_out);
    /* a short buffer holds the start; the callback stops the run */
    T_CHECK(kvtile_store_truncate(s, n - 1) == 0);
    char small[4];
    T_CHECK(kvtile_generate(c, s, ids, n, &gp, small, sizeof small, &r) == len);
    T_CHECK(r.n_prefill == 1 && !strncmp(small, want, 3) && small[3] == 0);
    int count = 0;
    gp.on_token = on_token;
    gp.user = &count;
    T_CHECK(kvtile_store_truncate(s, 0) == 0);
    T_CHECK(kvtile_generate(c, s, ids, n, &gp, got, sizeof got, &r) >= 0);
    T_CHECK(r.n_out == 5 && r.finish == 3 && count == 5);
    T_CHECK(kvtile_generate(c, s, ids, 2, &gp, got, sizeof got, &r) == -EINVAL); /* holds more */
    kvtile_store_close(s);
    kvtile_ctx_free(c);
    kvtile_model_close(m);
}

/* A scoring run stopped by its progress callback resumes to the same sums
 * as `kvtile ppl` (uninterrupted). */
struct stop_at { int64_t calls, limit; };
static int stop_progress(void *user, const struct kvtile_progress *p)
{
    struct stop_at *st = user;
    (void)p;
    return ++st->calls == st->limit ? -ECANCELED : 0;
}

static void test_score_resume(void)
{
    T_REQUIRE(access(MODEL, R_OK) == 0 && access(TEXT, R_OK) == 0, TEXT);
    char dir[256], txt[300], cmd[1024], out[8192];
    T_CHECK(t_tmpdir(dir, sizeof dir) != NULL);
    snprintf(txt, sizeof txt, "%s/t.txt", dir);
    snprintf(cmd, sizeof cmd, "head -c 30000 %s > %s", TEXT, txt);
    T_CHECK(t_sh(cmd, NULL, 0, NULL, 0) == 0);
    snprintf(cmd, sizeof cmd, "ppl %s -f %s -c 128 --chunks 5 -b 32 --json -q", MODEL, txt);
    T_CHECK(t_run(cmd, out, sizeof out, NULL, 0) == 0);
    double ref = t_json_num(out, "nll_sum");
    kvtile_model *m = open_model(MODEL);
    if (!m) return;
    size_t len;
    char *text = t_slurp(txt, &len);
    int32_t *ids = malloc(kvtile_tokenize_bound(len) * sizeof *ids);
    int64_t n = kvtile_tokenize(m, text, len, KVTILE_TOK_ADD_SPECIAL, ids,
                                kvtile_tokenize_bound(len), NULL);
    struct kvtile_ctx_params cp;
    kvtile_ctx_params_default(&cp);
    cp.n_ctx = 128;
    cp.n_batch = 32;
    kvtile_ctx *c;
    T_CHECK(kvtile_ctx_create(m, &cp, &c) == 0);
    char rdir[300];
    snprintf(rdir, sizeof rdir, "%s/run", dir);
    struct stop_at st = { 0, 9 };
    struct kvtile_score_params sp;
    kvtile_score_params_default(&sp);
    sp.max_windows = 5;
    sp.resume_dir = rdir;
    sp.progress = stop_progress;
    sp.user = &st;
    struct kvtile_score_result r;
    T_CHECK(kvtile_score(c, NULL, ids, n, &sp, &r) == -ECANCELED);
    sp.resume = 1;
    sp.progress = NULL;
    T_CHECK(kvtile_score(c, NULL, ids, n, &sp, &r) == 0);
    T_CHECK(r.resumed_from == 2); /* 4 batches a window: stopped in window 2 */
    T_CHECK(!isnan(ref) && r.nll_sum == ref);
    T_CHECK(r.n_eval < 5 * 128 && r.n_windows == 5 && r.n_ctx == 128);
    /* the journal is this run's: other options are refused */
    sp.stride = 64;
    T_CHECK(kvtile_score(c, NULL, ids, n, &sp, &r) == KVTILE_EOTHERRUN);
    sp.stride = 0;
    sp.resume_dir = NULL;
    T_CHECK(kvtile_score(c, NULL, ids, n, &sp, &r) == -EINVAL); /* resume without a dir */
    kvtile_ctx_free(c);
    kvtile_model_close(m);
    free(ids);
    free(text);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    T_CHECK(t_sh(cmd, NULL, 0, NULL, 0) == 0);
}

int main(void)
{
    T_RUN(test_version_errors);
    T_RUN(test_tokens);
    T_RUN(test_eval);
    T_RUN(test_ctx_and_store_errors);
    T_RUN(test_generate);
    T_RUN(test_score_resume);
    return t_done();
}
