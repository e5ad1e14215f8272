/* bench_codec.c - tile codecs on real K/V: compression ratio per section,
 * decode speed per core, q8_0 error, entropy bounds per byte plane.
 *
 * Input: cache files written by `kvtile ppl ... --keep-cache` (any element
 * type; read back through kvs as f32). PRE holds pre-rotation K (the
 * default); POST, optional, the same text with `--k-rotation write`
 * (post-rotation K). Every element type is packed from those f32 values.
 *
 * For each type (f16, bf16, f32, q8_0) and codec:
 *   ratio K, Krot, V  section ratios: raw bytes / payload bytes (the 64-byte
 *                     tile header and the 4 KiB record padding excluded). A
 *                     "K tile" is a tile of T tokens of K alone: its first
 *                     T/2 tokens in the K half, the next T/2 in the V half,
 *                     so each section is measured with the same tile size.
 *   ratio K+V         real tiles (pre-rotation K and V), as kvs writes them;
 *                     for f16 also per layer (a K or V section is T tokens
 *                     there, T/2 in the section ratios, which matters to
 *                     dedup-huf: it finds repeated rows within a section).
 *   dec GB/s          tile_decode_raw of every real tile (header, payload
 *                     and raw checksums included), raw bytes out per second,
 *                     1 thread, thread CPU time (CLOCK_THREAD_CPUTIME_ID:
 *                     a shared machine inflates wall time), median of REPS
 *                     runs; the codecs of one type
 *                     are timed interleaved within each run so machine
 *                     noise hits them alike.
 *   enc GB/s          tile_encode of every real tile (packing excluded; raw
 *                     and payload checksums included), raw bytes in per
 *                     second, timed like dec GB/s.
 *   +f32 GB/s         decode then unpack to f32 (f32 bytes out per second).
 * Then for f16: order-0 entropy of each byte plane per tile, and the
 * per-channel conditional entropy of the high byte over a whole layer (a
 * bound no per-tile order-0 coder of these planes can beat), with the
 * ratio they imply; and for q8_0: RMS relative error of dequantized vs
 * original, K pre-rotation, K post-rotation and V.
 *
 * usage: bench_codec PRE.kvt [POST.kvt] [-T tile_tokens] [-r reps] [-t type]
 *        (-t: only that element type's table)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "io/io.h"
#include "base/kvt.h"
#include "base/numfmt.h"
#include "kvstore/kvs.h"
#include "kvstore/tile.h"

struct kvdata {
    int n_layer, kv_dim;
    int64_t n_tok;
    float **k, **v; /* (n_layer) x (n_tok, kv_dim) */
};

static void die(const char *what, int rc)
{
    fprintf(stderr, "bench_codec: %s: %s\n", what, kvt_strerror(rc));
    exit(1);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) die("malloc", -12);
    return p;
}

/* Read every layer of the cache at PATH through kvs (replay rules and
 * checksums included) into f32 arrays. */
static int load_cache(const char *path, struct kvdata *d)
{
    FILE *f = fopen(path, "rb");
    if (!f) return -2;
    struct kvs_file_hdr fh;
    size_t got = fread(&fh, sizeof fh, 1, f);
    fclose(f);
    if (got != 1 || fh.magic != KVS_FILE_MAGIC) return KVT_EFORMAT;
    struct kvs_config c;
    memset(&c, 0, sizeof c);
    c.n_layer = (int)fh.n_layer;
    c.kv_dim = (int)fh.kv_dim;
    c.tile_tokens = (int)fh.tile_tokens;
    c.backing = KVS_DISK;
    c.type = fh.type;
    c.codec = fh.codec;
    c.io = IO_PREAD;
    c.queue_depth = 8;
    c.path = path;
    c.reopen = 1;
    memcpy(c.model_fp, fh.model_fp, sizeof c.model_fp);
    kvs *s;
    int rc = kvs_open(&c, &s);
    if (rc < 0) return rc;
    d->n_layer = c.n_layer;
    d->kv_dim = c.kv_dim;
    d->n_tok = kvs_n_tokens(s);
    d->k = xmalloc((size_t)d->n_layer * sizeof *d->k);
    d->v = xmalloc((size_t)d->n_layer * sizeof *d->v);
    size_t row = (size_t)d->kv_dim * sizeof(float);
    for (int l = 0; l < d->n_layer && rc >= 0; l++) {
        d->k[l] = xmalloc((size_t)d->n_tok * row);
        d->v[l] = xmalloc((size_t)d->n_tok * row);
        rc = kvs_read_begin(s, l, d->n_tok);
        struct kvs_span sp;
        while (rc >= 0 && (rc = kvs_read_next(s, &sp)) > 0) {
            memcpy((char *)d->k[l] + (size_t)sp.pos0 * row, sp.k, (size_t)sp.n * row);
            memcpy((char *)d->v[l] + (size_t)sp.pos0 * row, sp.v, (size_t)sp.n * row);
        }
        kvs_read_end(s);
    }
    kvs_close(s);
    return rc < 0 ? rc : 0;
}

/* ---- encoding ------------------------------------------------------------ */

struct enc_set {          /* all tiles of one (type, codec, section kind) */
    uint8_t *buf;         /* encoded tiles back to back */
    size_t *off, *len;    /* (n_tiles) */
    int n_tiles;
    double raw_bytes, payload_bytes;
    double raw_layer[64], payload_layer[64]; /* first 64 layers */
};

static size_t sc_cap, enc_cap;
static uint8_t *sc, *kraw, *vraw;

/* Pack n rows of a and of b into kraw, vraw; the header to encode them. */
static struct tile_hdr pack_tile(int type, int codec, int D, int n, const float *a,
                                 const float *b, int layer, int64_t pos0)
{
    tile_pack(type, D, a, n, kraw);
    tile_pack(type, D, b, n, vraw);
    struct tile_hdr h;
    memset(&h, 0, sizeof h);
    h.type = (uint8_t)type;
    h.codec = (uint8_t)codec;
    h.layer = (uint32_t)layer;
    h.n = (uint32_t)n;
    h.pos0 = (uint64_t)pos0;
    h.kv_dim = (uint32_t)D;
    return h;
}

/* Encode tiles of n tokens: K half from a, V half from b (row offsets
 * given per tile by the caller's layout). */
static void enc_tile(struct enc_set *e, int type, int codec, int D, int n,
                     const float *a, const float *b, int layer, int64_t pos0)
{
    struct tile_hdr h = pack_tile(type, codec, D, n, a, b, layer, pos0);
    size_t o = e->n_tiles ? e->off[e->n_tiles - 1] + e->len[e->n_tiles - 1] : 0;
    int64_t len = tile_encode(&h, kraw, vraw, e->buf + o, enc_cap, sc, sc_cap);
    if (len < 0) die("tile_encode", (int)len);
    e->off[e->n_tiles] = o;
    e->len[e->n_tiles] = (size_t)len;
    e->n_tiles++;
    e->raw_bytes += (double)tile_raw_bytes(type, D, n);
    e->payload_bytes += (double)len - (double)sizeof(struct tile_hdr);
    if (layer < 64) {
        e->raw_layer[layer] += (double)tile_raw_bytes(type, D, n);
        e->payload_layer[layer] += (double)len - (double)sizeof(struct tile_hdr);
    }
}

/* kind 0: real tiles (K, V); 1: K-only tiles from x; 2: V-only from x. */
static void enc_all(struct enc_set *e, const struct kvdata *d, int kind,
                    float **x, int type, int codec, int T)
{
    int D = d->kv_dim;
    int64_t nt = d->n_tok / T;
    e->n_tiles = 0;
    e->raw_bytes = e->payload_bytes = 0;
    memset(e->raw_layer, 0, sizeof e->raw_layer);
    memset(e->payload_layer, 0, sizeof e->payload_layer);
    for (int l = 0; l < d->n_layer; l++)
        for (int64_t i = 0; i < nt; i++) {
            size_t r0 = (size_t)(i * T) * (size_t)D;
            if (kind == 0)
                enc_tile(e, type, codec, D, T, d->k[l] + r0, d->v[l] + r0, l, i * T);
            else
                enc_tile(e, type, codec, D, T / 2, x[l] + r0,
                         x[l] + r0 + (size_t)(T / 2) * D, l, i * T);
        }
}

/* CPU seconds of this thread: unlike wall time, not inflated while other
 * processes hold the core (the machine is shared). */
static double cpu_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double time_decode(const struct enc_set *e, uint8_t *raw, size_t raw_cap,
                          float *fk, float *fv, size_t f_cap, int unpack)
{
    double t0 = cpu_now_s();
    for (int i = 0; i < e->n_tiles; i++) {
        int64_t rc;
        if (unpack)
            rc = tile_decode(e->buf + e->off[i], e->len[i], fk, f_cap, fv, f_cap,
                             raw, raw_cap, sc, sc_cap, NULL);
        else
            rc = tile_decode_raw(e->buf + e->off[i], e->len[i], raw, raw_cap, sc,
                                 sc_cap, NULL);
        if (rc < 0) die("decode", (int)rc);
    }
    return cpu_now_s() - t0;
}

/* Thread CPU seconds in tile_encode alone (packing excluded) over every
 * real tile (K, V) of d, encoded into dst (enc_cap bytes). */
static double time_encode(const struct kvdata *d, int type, int codec, int T, uint8_t *dst)
{
    int D = d->kv_dim;
    double t = 0;
    for (int l = 0; l < d->n_layer; l++)
        for (int64_t i = 0; i < d->n_tok / T; i++) {
            size_t r0 = (size_t)(i * T) * (size_t)D;
            struct tile_hdr h = pack_tile(type, codec, D, T, d->k[l] + r0, d->v[l] + r0, l, i * T);
            double t0 = cpu_now_s();
            int64_t len = tile_encode(&h, kraw, vraw, dst, enc_cap, sc, sc_cap);
            t += cpu_now_s() - t0;
            if (len < 0) die("tile_encode", (int)len);
        }
    return t;
}

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_dbl);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* ---- entropy and error --------------------------------------------------- */

static double entropy(const uint32_t *cnt, int ns)
{
    double t = 0, h = 0;
    for (int i = 0; i < ns; i++) t += cnt[i];
    for (int i = 0; i < ns; i++)
        if (cnt[i]) h -= cnt[i] * log2(cnt[i] / t);
    return t > 0 ? h / t : 0;
}

/* f16 planes of x: mean over tiles of the order-0 entropy of the high and
 * low byte planes; whole-layer per-channel entropy of the high byte. */
static void f16_entropy(const struct kvdata *d, float **x, int T, double out[3])
{
    int D = d->kv_dim;
    uint32_t hi[256], lo[256];
    uint32_t *ch = xmalloc((size_t)D * 256 * sizeof *ch);
    double shi = 0, slo = 0, sch = 0;
    int ntiles = 0;
    for (int l = 0; l < d->n_layer; l++) {
        memset(ch, 0, (size_t)D * 256 * sizeof *ch);
        for (int64_t t0 = 0; t0 + T <= d->n_tok; t0 += T) {
            memset(hi, 0, sizeof hi);
            memset(lo, 0, sizeof lo);
            for (int64_t t = t0; t < t0 + T; t++)
                for (int c = 0; c < D; c++) {
                    uint16_t h = numfmt_f32_to_f16(x[l][(size_t)t * D + c]);
                    hi[h >> 8]++;
                    lo[h & 255]++;
                    ch[(size_t)c * 256 + (h >> 8)]++;
                }
            shi += entropy(hi, 256);
            slo += entropy(lo, 256);
            ntiles++;
        }
        double a = 0;
        for (int c = 0; c < D; c++) a += entropy(ch + (size_t)c * 256, 256);
        sch += a / D;
    }
    free(ch);
    out[0] = shi / ntiles;
    out[1] = slo / ntiles;
    out[2] = sch / d->n_layer;
}

static double q8_rms_rel(const struct kvdata *d, float **x, int T)
{
    int D = d->kv_dim;
    size_t cnt = (size_t)T * D;
    uint8_t *q = xmalloc(tile_row_bytes(KVS_Q8_0, D) * (size_t)T);
    float *y = xmalloc(cnt * sizeof *y);
    double num = 0, den = 0;
    for (int l = 0; l < d->n_layer; l++)
        for (int64_t t0 = 0; t0 + T <= d->n_tok; t0 += T) {
            const float *xs = x[l] + (size_t)t0 * D;
            tile_pack(KVS_Q8_0, D, xs, T, q);
            tile_unpack(KVS_Q8_0, D, q, T, y);
            for (size_t i = 0; i < cnt; i++) {
                double e = (double)y[i] - xs[i];
                num += e * e;
                den += (double)xs[i] * xs[i];
            }
        }
    free(q);
    free(y);
    return sqrt(num / den);
}

/* ---- main ---------------------------------------------------------------- */

int main(int argc, char **argv)
{
    const char *pre = NULL, *post = NULL;
    int T = 256, reps = 7, only = -1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-T") && i + 1 < argc) T = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-r") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-t") && i + 1 < argc) only = tile_type_parse(argv[++i]);
        else if (!pre) pre = argv[i];
        else if (!post) post = argv[i];
        else { pre = NULL; break; }
    }
    if (!pre || T < 2 || T % 2 || reps < 1 || reps > 101) {
        fprintf(stderr, "usage: bench_codec PRE.kvt [POST.kvt] [-T tile_tokens] [-r reps] [-t type]\n");
        return 2;
    }
    struct kvdata d, dr;
    int rc = load_cache(pre, &d);
    if (rc < 0) die(pre, rc);
    int have_rot = 0;
    if (post) {
        rc = load_cache(post, &dr);
        if (rc < 0) die(post, rc);
        if (dr.kv_dim != d.kv_dim || dr.n_layer != d.n_layer) die(post, KVT_ESHAPE);
        have_rot = 1;
        d.n_tok = KVT_MIN(d.n_tok, dr.n_tok);
        dr.n_tok = d.n_tok;
    }
    const int D = d.kv_dim;
    if (d.n_tok < T) die("fewer tokens than one tile", KVT_ERANGE);
    printf("# %s%s%s: %d layers, kv_dim %d, %lld tokens, tiles of %d tokens\n", pre,
           post ? " + " : "", post ? post : "", d.n_layer, D, (long long)d.n_tok, T);

    sc_cap = tile_scratch_bound(KVS_F32, D, T);
    enc_cap = tile_encode_bound(KVS_F32, D, T);
    sc = xmalloc(sc_cap);
    kraw = xmalloc(sc_cap);
    vraw = xmalloc(sc_cap);
    size_t max_tiles = (size_t)d.n_layer * (size_t)(d.n_tok / T) + 1;
    struct enc_set real[TILE_NCODECS];
    for (int c = 0; c < TILE_NCODECS; c++) {
        real[c].buf = xmalloc(max_tiles * enc_cap);
        real[c].off = xmalloc(max_tiles * sizeof(size_t));
        real[c].len = xmalloc(max_tiles * sizeof(size_t));
    }
    struct enc_set sec = real[0]; /* section sets reuse one buffer set */
    sec.buf = xmalloc(max_tiles * enc_cap);
    sec.off = xmalloc(max_tiles * sizeof(size_t));
    sec.len = xmalloc(max_tiles * sizeof(size_t));
    uint8_t *raw = xmalloc(sc_cap);
    size_t f_cap = (size_t)T * D;
    float *fk = xmalloc(f_cap * sizeof *fk), *fv = xmalloc(f_cap * sizeof *fv);
    double *tr = xmalloc((size_t)reps * TILE_NCODECS * sizeof *tr);
    double *tf = xmalloc((size_t)reps * TILE_NCODECS * sizeof *tf);
    double *te = xmalloc((size_t)reps * TILE_NCODECS * sizeof *te);
    uint8_t *enc_tmp = xmalloc(enc_cap);

    static double kv_layer[TILE_NCODECS][64]; /* f16 real tiles, per layer */
    static const int types[] = { KVS_F16, KVS_BF16, KVS_F32, KVS_Q8_0 };
    printf("\n| type | codec | K | Krot | V | K+V | enc GB/s | dec GB/s | +f32 GB/s |\n");
    printf("|---|---|---|---|---|---|---|---|---|\n");
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        int type = types[ti];
        if (only >= 0 && type != only) continue;
        double rk[TILE_NCODECS], rkr[TILE_NCODECS], rv[TILE_NCODECS];
        for (int c = 0; c < TILE_NCODECS; c++) {
            enc_all(&sec, &d, 1, d.k, type, c, T);
            rk[c] = sec.raw_bytes / sec.payload_bytes;
            rkr[c] = 0;
            if (have_rot) {
                enc_all(&sec, &d, 1, dr.k, type, c, T);
                rkr[c] = sec.raw_bytes / sec.payload_bytes;
            }
            enc_all(&sec, &d, 2, d.v, type, c, T);
            rv[c] = sec.raw_bytes / sec.payload_bytes;
            enc_all(&real[c], &d, 0, NULL, type, c, T);
            for (int l = 0; type == KVS_F16 && l < d.n_layer && l < 64; l++)
                kv_layer[c][l] = real[c].raw_layer[l] / real[c].payload_layer[l];
        }
        for (int r = 0; r < reps; r++)
            for (int c = 0; c < TILE_NCODECS; c++) {
                tr[c * reps + r] = time_decode(&real[c], raw, sc_cap, fk, fv, f_cap, 0);
                tf[c * reps + r] = time_decode(&real[c], raw, sc_cap, fk, fv, f_cap, 1);
                te[c * reps + r] = time_encode(&d, type, c, T, enc_tmp);
            }
        for (int c = 0; c < TILE_NCODECS; c++) {
            double raw_b = real[c].raw_bytes;
            double f32_b = (double)real[c].n_tiles * 2.0 * (double)f_cap * 4.0;
            char krot[16] = "-";
            if (have_rot) snprintf(krot, sizeof krot, "%.3f", rkr[c]);
            printf("| %s | %s | %.3f | %s | %.3f | %.3f | %.3f | %.2f | %.2f |\n",
                   tile_type_name(type), tile_codec_name(c), rk[c], krot, rv[c],
                   raw_b / real[c].payload_bytes,
                   raw_b / median(te + c * reps, reps) / 1e9,
                   raw_b / median(tr + c * reps, reps) / 1e9,
                   f32_b / median(tf + c * reps, reps) / 1e9);
        }
        fflush(stdout);
    }

    /* per layer: layer 0's K (pre-rotation) and V depend on the token id
     * alone, so repeated tokens give repeated rows that LZ-type codecs
     * find; later layers do not repeat */
    printf("\nf16 ratio per layer (K | Krot | V):\n| codec |");
    for (int l = 0; l < d.n_layer && l < 64; l++) printf(" layer %d |", l);
    printf("\n|---|");
    for (int l = 0; l < d.n_layer && l < 64; l++) printf("---|");
    printf("\n");
    static const int lc[] = { TILE_LZ4, TILE_SHUF_LZ4, TILE_PLANE_HUF, TILE_DEDUP_HUF };
    for (size_t i = 0; i < sizeof lc / sizeof lc[0]; i++) {
        double r[3][64];
        for (int k = 0; k < 3; k++) {
            if (k == 1 && !have_rot) continue;
            enc_all(&sec, &d, k == 2 ? 2 : 1, k == 0 ? d.k : k == 1 ? dr.k : d.v,
                    KVS_F16, lc[i], T);
            for (int l = 0; l < d.n_layer && l < 64; l++)
                r[k][l] = sec.raw_layer[l] / sec.payload_layer[l];
        }
        printf("| %s |", tile_codec_name(lc[i]));
        for (int l = 0; l < d.n_layer && l < 64; l++) {
            if (have_rot) printf(" %.3f / %.3f / %.3f |", r[0][l], r[1][l], r[2][l]);
            else printf(" %.3f / - / %.3f |", r[0][l], r[2][l]);
        }
        printf("\n");
    }

    /* real tiles: a K or V section is T tokens, not T/2 as in the section
     * ratios above, so row repeats within a section count fully */
    if (only < 0 || only == KVS_F16) {
        printf("\nf16 ratio per layer, K+V (real tiles):\n| codec |");
        for (int l = 0; l < d.n_layer && l < 64; l++) printf(" layer %d |", l);
        printf("\n|---|");
        for (int l = 0; l < d.n_layer && l < 64; l++) printf("---|");
        printf("\n");
        for (size_t i = 0; i < sizeof lc / sizeof lc[0]; i++) {
            printf("| %s |", tile_codec_name(lc[i]));
            for (int l = 0; l < d.n_layer && l < 64; l++)
                printf(" %.3f |", kv_layer[lc[i]][l]);
            printf("\n");
        }
    }

    printf("\nf16 byte planes, bits per byte (order-0 per tile; high byte per "
           "channel over a whole layer) and the ratio they bound:\n");
    printf("| section | H(hi) | H(lo) | H(hi given channel) | bound order-0 | bound per-channel |\n");
    printf("|---|---|---|---|---|---|\n");
    struct { const char *name; float **x; int ok; } secs[] = {
        { "K", d.k, 1 }, { "Krot", have_rot ? dr.k : NULL, have_rot }, { "V", d.v, 1 },
    };
    for (int i = 0; i < 3; i++) {
        if (!secs[i].ok) continue;
        double e[3];
        f16_entropy(&d, secs[i].x, T, e);
        printf("| %s | %.3f | %.3f | %.3f | %.3fx | %.3fx |\n", secs[i].name, e[0], e[1],
               e[2], 16.0 / (e[0] + e[1]), 16.0 / (e[2] + e[1]));
    }

    printf("\nq8_0 RMS relative error (dequantized vs original): K %.5f", q8_rms_rel(&d, d.k, T));
    if (have_rot) printf(", Krot %.5f", q8_rms_rel(&d, dr.k, T));
    printf(", V %.5f\n", q8_rms_rel(&d, d.v, T));
    printf("q8_0 size vs f16: %.4fx smaller\n",
           (double)tile_row_bytes(KVS_F16, D) / (double)tile_row_bytes(KVS_Q8_0, D));
    return 0;
}
