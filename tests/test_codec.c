/* test_codec.c - the encoded bytes of every codec and element type are
 * fixed: synthetic tiles are packed and encoded with each codec and the
 * size and XXH3 of each encoded tile (header + payload) are compared with
 * tests/data/codec_golden.txt, captured from the code before the codecs
 * moved into their own files (kvstore/codec*.c). A change of any byte the
 * cache format writes fails here. Every tile is also decoded back.
 *
 * `test_codec --write` prints the golden lines instead (only for a
 * deliberate format change, which also bumps TILE_VERSION).
 *
 * The tiles use only + and * on floats (no libm), so they are the same
 * bytes on every IEEE machine.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/kvt.h"
#include "kvstore/codec.h"
#include "kvstore/tile.h"
#include "tests/t.h"

#define GOLDEN "tests/data/codec_golden.txt"

static uint64_t rs;
static uint64_t rng(void) { rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17; return rs; }
static float unif(void) { return (float)(rng() >> 40) * (1.0f / 16777216.0f); }
static float gauss(void) { return (unif() + unif() + unif() + unif() - 2.0f) * 1.7320508f; }

struct tile_case {
    const char *name;
    int n, D;
    int q8; /* 0: values q8_0 cannot take (inf, NaN): skip that type */
};

static const struct tile_case cases[] = {
    { "ar1", 256, 128, 1 },    /* K/V-like: per-channel scale, drift */
    { "grid-rep", 64, 64, 1 }, /* coarse values, rows repeat every 5 */
    { "tail", 13, 96, 1 },     /* a short tail (no column bias) */
    { "many-rep", 600, 32, 1 },/* > 256 unique rows: 2-byte refs */
    { "special", 40, 64, 0 },  /* zeros, subnormals, ties, inf, NaN */
};

/* Fill k and v (n x D) for case c. */
static void make_case(const struct tile_case *c, float *k, float *v)
{
    int n = c->n, D = c->D;
    rs = 0x9e3779b97f4a7c15ull ^ (uint64_t)(n * 131 + D);
    static const float scales[4] = { 0.25f, 1.0f, 4.0f, 32.0f };
    float ak[1024] = {0}, av[1024] = {0}, sc[1024], off[1024];
    for (int j = 0; j < D; j++) {
        sc[j] = scales[rng() % 4];
        off[j] = gauss() * 2.0f;
    }
    for (int t = 0; t < n; t++)
        for (int j = 0; j < D; j++) {
            ak[j] = 0.9f * ak[j] + 0.44f * gauss();
            av[j] = 0.8f * av[j] + 0.6f * gauss();
            k[t * D + j] = off[j] + sc[j] * (ak[j] + 0.3f * gauss());
            v[t * D + j] = 0.2f * sc[j] * av[j];
        }
    if (!strcmp(c->name, "grid-rep") || !strcmp(c->name, "many-rep")) {
        int period = !strcmp(c->name, "grid-rep") ? 5 : 400;
        for (int t = 0; t < n; t++)
            for (int j = 0; j < D; j++) {
                int r = (t % period) * D + j;
                k[t * D + j] = (float)(int)(k[r] * 4.0f) * 0.25f;
                v[t * D + j] = (float)(int)(v[r] * 8.0f) * 0.125f;
            }
    }
    if (!strcmp(c->name, "special")) {
        static const uint32_t bits[] = {
            0x00000000u, 0x80000000u, 0x00000001u, 0x807fffffu, /* 0, -0, f32 subnormals */
            0x33000000u, 0x33000001u, 0x387fc000u, 0x38800000u, /* f16 subnormal edges */
            0x3f801000u, 0x3f803000u, 0x3f808000u, 0x3f818000u, /* f16 / bf16 ties */
            0x477fefffu, 0x477ff000u, 0x7f7fffffu, 0xff7fffffu, /* f16 max, overflow */
            0x7f800000u, 0xff800000u, 0x7fc00000u, 0xffc00000u, /* inf, default NaNs */
        };
        int nb = (int)(sizeof bits / sizeof bits[0]);
        for (int i = 0; i < n * D; i += 7) {
            uint32_t u = bits[(i / 7) % nb];
            memcpy(&k[i], &u, 4);
            memcpy(&v[(i * 3) % (n * D)], &u, 4);
        }
    }
}

/* One golden line per (case, type, codec): "case type codec size xxh". */
static int run_cases(FILE *out, FILE *golden)
{
    int bad = 0, lines = 0;
    char want[256], got[256];
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const struct tile_case *c = &cases[ci];
        size_t f = (size_t)c->n * c->D;
        float *k = malloc(f * 4), *v = malloc(f * 4);
        make_case(c, k, v);
        for (int type = 0; type < KVS_NTYPES; type++) {
            if (type == KVS_Q8_0 && !c->q8) continue;
            size_t half = tile_raw_bytes(type, c->D, c->n) / 2;
            size_t enc_cap = tile_encode_bound(type, c->D, c->n);
            size_t sc_cap = tile_scratch_bound(type, c->D, c->n);
            uint8_t *kr = malloc(half), *vr = malloc(half), *enc = malloc(enc_cap);
            uint8_t *sc = malloc(sc_cap), *raw = malloc(2 * half);
            tile_pack(type, c->D, k, c->n, kr);
            tile_pack(type, c->D, v, c->n, vr);
            for (int codec = 0; codec < TILE_NCODECS; codec++) {
                struct tile_hdr h;
                memset(&h, 0, sizeof h);
                h.type = (uint8_t)type;
                h.codec = (uint8_t)codec;
                h.layer = 2;
                h.n = (uint32_t)c->n;
                h.pos0 = 4096;
                h.kv_dim = (uint32_t)c->D;
                int64_t len = tile_encode(&h, kr, vr, enc, enc_cap, sc, sc_cap);
                T_CHECK(len > 0);
                if (len <= 0) { bad++; continue; }
                int64_t r = tile_decode_raw(enc, (size_t)len, raw, 2 * half, sc, sc_cap, NULL);
                T_CHECK(r == (int64_t)(2 * half));
                T_CHECK(memcmp(raw, kr, half) == 0 && memcmp(raw + half, vr, half) == 0);
                snprintf(got, sizeof got, "%s %s %s %lld %016llx", c->name,
                         tile_type_name(type), tile_codec_name(codec), (long long)len,
                         (unsigned long long)tile_hash(enc, (size_t)len));
                if (out) fprintf(out, "%s\n", got);
                if (!golden) continue;
                lines++;
                do {
                    if (!fgets(want, sizeof want, golden)) { want[0] = 0; break; }
                } while (want[0] == '#');
                want[strcspn(want, "\n")] = 0;
                if (strcmp(want, got) != 0) {
                    if (bad++ < 5) fprintf(stderr, "  want '%s'\n  got  '%s'\n", want, got);
                }
            }
            free(kr); free(vr); free(enc); free(sc); free(raw);
        }
        free(k); free(v);
    }
    if (golden && fgets(want, sizeof want, golden)) bad++; /* extra lines */
    if (golden) fprintf(stderr, "  %d golden lines compared, %d differ\n", lines, bad);
    return bad;
}

static void test_golden(void)
{
    FILE *g = fopen(GOLDEN, "r");
    T_REQUIRE(g != NULL, GOLDEN);
    T_CHECK(run_cases(NULL, g) == 0);
    fclose(g);
}

/* The table: entry i is codec i, names parse back, the bounds tile.h
 * states (LZ4's bound for the payload; raw plus dedup-huf's tables for
 * the scratch) are the maxima over the table. */
static void test_table(void)
{
    for (int c = 0; c < TILE_NCODECS; c++) {
        T_CHECK(codec_table[c] != NULL && codec_table[c]->id == c);
        T_CHECK(tile_codec_parse(tile_codec_name(c)) == c);
        T_CHECK(!strcmp(codec_table[c]->name, tile_codec_name(c)));
    }
    T_CHECK(tile_codec_parse("zstd") == KVT_ERANGE);
    T_CHECK(!strcmp(tile_codec_name(TILE_NCODECS), "?"));
    size_t raw = tile_raw_bytes(KVS_F16, 128, 256);
    T_CHECK(tile_encode_bound(KVS_F16, 128, 256) == 64 + raw + raw / 255 + 16);
    T_CHECK(tile_scratch_bound(KVS_F16, 128, 256) == raw + 8 + 4 * 512 + 8 * 256);
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "--write")) return run_cases(stdout, NULL) ? 1 : 0;
    T_RUN(test_table);
    T_RUN(test_golden);
    return t_done();
}
