/* fuzz_factors.c - libFuzzer target for the LongRoPE factors file reader
 * (rope_factors_parse: numbers, commas, one [...] list, # comments).
 * Property: never reads past len (the input is not NUL-terminated: it is
 * copied to an exact-size buffer so ASan sees an overread); on success
 * 1 <= n <= max and every factor is finite and > 0.
 * With -DKVT_REPLAY it replays files. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/rope.h"
#include "base/kvt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size ? size : 1);
    KVT_ASSERT(text);
    memcpy(text, data, size);
    float f[ROPE_MAX_PAIRS];
    int n = -1;
    int max = 1 + (size ? data[0] % ROPE_MAX_PAIRS : 0);
    if (rope_factors_parse(text, size, f, max, &n) == 0) {
        KVT_ASSERT(n >= 1 && n <= max);
        for (int i = 0; i < n; i++) KVT_ASSERT(isfinite(f[i]) && f[i] > 0);
    }
    free(text);
    return 0;
}

#ifdef KVT_REPLAY
#include "replay.h"   /* main: replay the files named */
#endif
