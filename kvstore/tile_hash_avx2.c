/* tile_hash_avx2.c - XXH3-64 for the avx2 set (see tile_hash.h); the
 * Makefile builds this file with -march=x86-64-v3. */
#include "kvstore/tile_hash.h"

#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t */
#define XXH_INLINE_ALL /* compiled here with this file's vector ISA */
#include <xxhash.h>

uint64_t tile_xxh3_avx2(const void *p, size_t n) { return XXH3_64bits(p, n); }

void tile_xxh3_update_avx2(void *st, const void *p, size_t n)
{
    (void)XXH3_64bits_update((XXH3_state_t *)st, p, n);
}
