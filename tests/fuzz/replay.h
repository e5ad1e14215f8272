/* replay.h - the plain-program side of a fuzz target (built with
 * -DKVT_REPLAY): feed each file named on the command line to
 * LLVMFuzzerTestOneInput, so corpora and crash files replay without
 * libFuzzer. */
#ifndef KVT_FUZZ_REPLAY_H
#define KVT_FUZZ_REPLAY_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void replay_files(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        FILE *f = fopen(argv[i], "rb");
        if (!f) continue;
        fseek(f, 0, SEEK_END);
        long n = ftell(f);
        fseek(f, 0, SEEK_SET);
        uint8_t *buf = malloc(n > 0 ? (size_t)n : 1);
        size_t got = buf ? fread(buf, 1, (size_t)(n > 0 ? n : 0), f) : 0;
        fclose(f);
        if (buf) LLVMFuzzerTestOneInput(buf, got);
        free(buf);
    }
}

#ifndef REPLAY_OWN_MAIN
/* The replay program of a target without seeds of its own to write. */
int main(int argc, char **argv)
{
    replay_files(argc, argv);
    return 0;
}
#endif

#endif
