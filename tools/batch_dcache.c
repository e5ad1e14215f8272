/* batch_dcache.c - the cache policy of `kvtile batch` (batch.h): which
 * document cache a token run uses, what of it is reusable, checkpoints.
 *
 * A cache is reused up to the tokens that are both in the store and
 * recorded as durable by the sidecar, rounded down to an evaluation chunk
 * (score: and covered by the sidecar's NLLs); the whole run cached is a
 * hit. Anything else that is not this run's sidecar (missing, damaged,
 * another document or model) starts over. One run at a time uses a cache:
 * the sidecar's flock; other runs on the same directory wait, then find
 * the cache. Fatal: I/O errors, no space, no permission, a store locked
 * by another process. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "base/kvt.h"
#include "tools/batch.h"

static void kv_fatal(const char *what, int rc)
{
    cli_die("%s: %s", what, kvt_strerror(rc));
}

const char *dcache_name(const struct dcache *dc)
{
    return dc->own ? dc->path : "KV store";
}

/* The cache's name: XXH3-64 of TAG, the positions key and the token ids;
 * its two paths in the cache directory. */
static uint64_t dcache_paths(const struct batch *b, const char *tag, const int32_t *ids,
                             int64_t n, struct dcache *dc)
{
    XXH3_state_t *st = XXH3_createState();
    if (!st) cli_die("out of memory");
    XXH3_64bits_reset(st);
    XXH3_64bits_update(st, tag, strlen(tag) + 1);
    XXH3_64bits_update(st, b->pos_key, strlen(b->pos_key) + 1);
    XXH3_64bits_update(st, ids, (size_t)n * sizeof *ids);
    uint64_t hash = XXH3_64bits_digest(st);
    XXH3_freeState(st);
    snprintf(dc->path, sizeof dc->path, "%s/%s-%016llx.kvt", b->o.cache_dir, b->fp_hex,
             (unsigned long long)hash);
    snprintf(dc->side, sizeof dc->side, "%s/%s-%016llx.kvm", b->o.cache_dir, b->fp_hex,
             (unsigned long long)hash);
    return hash;
}

/* Open the sidecar and take its lock, waiting for another run. */
static void dcache_lock(const struct batch *b, struct dcache *dc)
{
    dc->sfd = open(dc->side, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (dc->sfd < 0) cli_die("%s: %s", dc->side, strerror(errno));
    if (flock(dc->sfd, LOCK_EX | LOCK_NB) != 0) {
        if (errno != EWOULDBLOCK && errno != EINTR) cli_die("%s: %s", dc->side, strerror(errno));
        if (!b->o.quiet) cli_warn("%s: in use by another kvtile run; waiting for it", dc->side);
        while (flock(dc->sfd, LOCK_EX) != 0)
            if (errno != EINTR) cli_die("%s: %s", dc->side, strerror(errno));
    }
}

/* What the sidecar says is durable for this run: *durable tokens, *have_nll
 * NLLs (copied into dc->nll). Anything that is not this run's sidecar: 0. */
static void dcache_progress(const struct batch *b, uint64_t hash, int64_t n, struct dcache *dc,
                            int64_t *durable, int64_t *have_nll)
{
    struct bc_hdr h;
    double *nll = NULL;
    *durable = *have_nll = 0;
    int rc = bc_read(dc->side, &h, &nll);
    if (rc == -EIO || rc == -EACCES || rc == -ENOMEM) cli_die("%s: %s", dc->side, kvt_strerror(rc));
    if (rc == 0 && h.doc_hash == hash && h.doc_tokens == n && !memcmp(h.model_fp, b->fp, 32)) {
        *durable = h.cached_tokens;
        *have_nll = h.n_nll;
        if (dc->nll && *have_nll > 0) memcpy(dc->nll, nll, (size_t)*have_nll * sizeof *nll);
    }
    free(nll);
}

/* Reopen the store when DURABLE > 0 and it is usable, else create it.
 * @return the tokens it holds that count (0 when created). */
static int64_t dcache_store(const struct batch *b, int64_t durable, struct dcache *dc)
{
    const struct model_hparams *hp = b->hp;
    struct kvs_config cfg = {
        .n_layer = hp->n_layer, .kv_dim = hp->kv_dim, .tile_tokens = b->o.tile_tokens,
        .backing = KVS_DISK, .type = b->o.cache_type, .codec = b->o.codec, .io = b->o.io,
        .queue_depth = b->o.queue_depth, .ram_budget_bytes = b->o.ram_budget,
        .path = dc->path, .reopen = 1,
    };
    model_kv_pairing(b->m, &cfg.head_dim, &cfg.neox_rot);
    memcpy(cfg.model_fp, b->fp, 32);
    int64_t have = 0;
    int rc = durable > 0 ? kvs_open(&cfg, &dc->kv) : -ENOENT;
    if (rc == 0 && b->o.sel.on && kvs_summary_missing(dc->kv) > 0) {
        int64_t nb = kvs_summary_rebuild(dc->kv); /* a cache from before summaries */
        if (nb < 0) kv_fatal(dc->path, (int)nb);
    }
    if (rc == 0) {
        have = KVT_MIN(kvs_n_tokens(dc->kv), durable);
    } else if (rc == -EIO || rc == -ENOSPC || rc == -EACCES || rc == -ENOMEM) {
        kv_fatal(dc->path, rc);
    } else if (rc == -EBUSY) {
        cli_die("%s: in use by another kvtile run (locked)", dc->path);
    } else { /* missing, damaged or another model's: start over */
        cfg.reopen = 0;
        rc = kvs_open(&cfg, &dc->kv);
        if (rc < 0) kv_fatal(dc->path, rc);
        if ((rc = jnl_fsync_dir(dc->path)) < 0) kv_fatal(b->o.cache_dir, rc);
    }
    cli_note_io(dc->path, &b->o, dc->kv);
    dc->own = 1;
    return have;
}

void dcache_open(struct batch *b, const char *tag, const int32_t *ids, int64_t n,
                 struct dcache *dc)
{
    memset(dc, 0, sizeof *dc);
    dc->sfd = -1;
    if (b->task == TASK_SCORE && n > 1) {
        dc->nll = malloc((size_t)(n - 1) * sizeof *dc->nll);
        if (!dc->nll) cli_die("out of memory");
    }
    if (!b->o.cache_dir) {
        dc->kv = b->shared.kv;
        int rc = kvs_truncate(dc->kv, 0);
        if (rc < 0) kv_fatal("KV store", rc);
        return;
    }
    uint64_t hash = dcache_paths(b, tag, ids, n, dc);
    dcache_lock(b, dc);
    int64_t durable, have_nll;
    dcache_progress(b, hash, n, dc, &durable, &have_nll);
    int64_t ok = dcache_store(b, durable, dc);
    int complete = ok >= n && (b->task != TASK_SCORE || have_nll >= n - 1);
    if (complete) {
        dc->start = n;
        dc->hit = 1;
    } else {
        dc->start = ok / b->chunk * b->chunk;
        if (b->task == TASK_SCORE) dc->start = KVT_MIN(dc->start, have_nll / b->chunk * b->chunk);
    }
    /* layers fill independently: a run killed inside a batch can leave the
     * first layers ahead of kvs_n_tokens; cut every layer back to start */
    int64_t most = 0;
    int rc;
    for (int il = 0; il < b->hp->n_layer; il++)
        most = KVT_MAX(most, kvs_layer_tokens(dc->kv, il));
    if (most > dc->start && (rc = kvs_truncate(dc->kv, dc->start)) < 0) kv_fatal(dc->path, rc);

    memcpy(dc->h.model_fp, b->fp, 32);
    dc->h.doc_hash = hash;
    dc->h.doc_tokens = n;
    dc->h.cached_tokens = dc->start;
    dc->h.n_nll = b->task == TASK_SCORE ? KVT_MIN(dc->start, n - 1) : 0;
    if (dc->hit) {
        if (futimens(dc->sfd, NULL) != 0) cli_die("%s: %s", dc->side, strerror(errno));
    } else {
        rc = bc_write(dc->sfd, &dc->h, dc->nll, dc->h.n_nll);
        if (rc < 0) cli_die("%s: %s", dc->side, kvt_strerror(rc));
    }
}

void dcache_checkpoint(struct dcache *dc, int64_t n_nll)
{
    if (dc->sfd < 0) return;
    int rc = kvs_sync(dc->kv);
    if (rc < 0) kv_fatal(dc->path, rc);
    int64_t from = dc->h.n_nll;
    dc->h.cached_tokens = KVT_MIN(kvs_n_tokens(dc->kv), dc->h.doc_tokens);
    dc->h.n_nll = n_nll;
    rc = bc_write(dc->sfd, &dc->h, dc->nll, KVT_MIN(from, n_nll));
    if (rc < 0) cli_die("%s: %s", dc->side, kvt_strerror(rc));
}

void dcache_close(struct dcache *dc)
{
    if (dc->own) {
        int rc = kvs_sync(dc->kv);
        if (rc < 0) kv_fatal(dc->path, rc);
        kvs_close(dc->kv);
    }
    if (dc->sfd >= 0) close(dc->sfd);
    free(dc->nll);
    memset(dc, 0, sizeof *dc);
}
