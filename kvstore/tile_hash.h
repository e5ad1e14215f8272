/* tile_hash.h - XXH3-64 built for the avx2 set (tile_hash_avx2.c, compiled
 * with -march=x86-64-v3), which tile.c uses for the tiles' checksums when
 * the default kernel set (base/cpu.h) is avx2 or avx512: about 1.8x the
 * rate of the baseline's SSE2 code on this project's host (AVX2 lanes were
 * also faster than AVX-512's there). XXH3 is specified bit for bit, so
 * both give the same hashes; tests/test_tile checks them against the
 * system's libxxhash. Not a public header: only kvstore/tile*.c and tests
 * include it. ST is an XXH3_state_t (xxhash.h, XXH_STATIC_LINKING_ONLY). */
#ifndef KVT_TILE_HASH_H
#define KVT_TILE_HASH_H

#include <stddef.h>
#include <stdint.h>

uint64_t tile_xxh3_avx2(const void *p, size_t n);
void tile_xxh3_update_avx2(void *st, const void *p, size_t n);

#endif
