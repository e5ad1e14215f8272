/* kvtile.c - the command line: dispatch to the subcommands. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "engine/cpu.h"
#include "base/kvt.h"

struct cmd {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *what;
};

static const struct cmd cmds[] = {
    { "info", cmd_info, "architecture, sizes, types, positions, vocabulary" },
    { "tokenize", cmd_tokenize, "text to token ids" },
    { "generate", cmd_generate, "continue a prompt" },
    { "ppl", cmd_ppl, "perplexity of a long text" },
    { "longrope-search", cmd_longrope, "evolutionary search of LongRoPE factors" },
    { "passkey", cmd_passkey, "passkey retrieval accuracy by length and depth" },
    { "batch", cmd_batch, "score or question many documents (caches, resume, shards)" },
    { "merge", cmd_merge, "join batch shard outputs in input order" },
    { "cache", cmd_cache, "list, remove, garbage-collect batch document caches" },
    { "iobench", cmd_iobench, "disk streaming throughput vs raw device bandwidth" },
};

static int usage(FILE *f)
{
    fprintf(f, "usage: kvtile COMMAND [args]   (kvtile COMMAND --help for its options)\n");
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        fprintf(f, "  %-10s %s\n", cmds[i].name, cmds[i].what);
    return 2;
}

int main(int argc, char **argv)
{
    cli_exit_init(); /* signals exit with 128 + signo, after cleanup */
    if (argc < 2) return usage(stderr);
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(stdout);
        return 0;
    }
    const int rc = cpu_env_check();
    if (rc < 0) {
        fprintf(stderr, "kvtile: KVT_CPU=%s: %s (portable, avx2, avx512)\n", getenv("KVT_CPU"),
                rc == KVT_EUNSUPP ? "this CPU lacks that kernel set" : "unknown kernel set");
        return 2;
    }
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (!strcmp(argv[1], cmds[i].name)) return cmds[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "kvtile: unknown command '%s'\n", argv[1]);
    return usage(stderr);
}
