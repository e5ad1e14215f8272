/* kvtile.c - the command line: dispatch to the subcommands. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "engine/cpu.h"
#include "base/kvt.h"
#include "api/kvtile.h"
#include "tools/opt.h"

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

/* The options of one command as a man page section: the command run in a
 * child with --help (its option table is built where its fields live),
 * opt_man printing roff instead of the help. */
static int man_section(const struct cmd *c, const char *sub)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        char *argv[] = { (char *)c->name, (char *)sub, "--help", NULL };
        opt_set_man(1);
        if (sub) c->fn(3, argv);
        else { argv[1] = "--help"; argv[2] = NULL; c->fn(2, argv); }
        _exit(1); /* --help exits 0 */
    }
    int st;
    if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) return -1;
    return 0;
}

/* `kvtile --man`: the man page kvtile.1 (roff) from the commands' option
 * tables, the same tables --help prints. */
static int man(void)
{
    printf(".TH KVTILE 1 \"\" \"kvtile %s\" \"User Commands\"\n"
           ".SH NAME\nkvtile \\- long\\-context LLM engine with its KV cache in compressed tiles on disk\n"
           ".SH SYNOPSIS\n.B kvtile\n.I COMMAND\n[options]\n.br\n.B kvtile\n.I COMMAND\n\\-\\-help\n"
           ".SH COMMANDS\n", kvtile_version_string());
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        printf(".TP\n.B %s\n%s\n", cmds[i].name, cmds[i].what);
    printf(".SH OPTIONS\nEvery command takes \\-h, \\-\\-help. Counts take k and M suffixes "
           "(1024, 1024 x 1024).\n");
    static const char *const cache_subs[] = { "ls", "rm", "gc" };
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        int is_cache = cmds[i].fn == cmd_cache;
        for (size_t k = 0; k < (is_cache ? 3u : 1u); k++)
            if (man_section(&cmds[i], is_cache ? cache_subs[k] : NULL) < 0) {
                fprintf(stderr, "kvtile --man: %s: no option table\n", cmds[i].name);
                return 1;
            }
    }
    printf(".SH ENVIRONMENT\n.TP\n.B KVT_CPU\nportable, avx2 or avx512: the matrix kernel set "
           "(default: the best this CPU has)\n.TP\n.B KVT_NO_URING\n1: simulate a kernel "
           "without io_uring\n.TP\n.B TMPDIR\nwhere temporary caches go (default /tmp)\n"
           ".SH EXIT STATUS\n0 on success, 1 on an error (one line on stderr naming the file and "
           "the problem), 2 on a usage error, 128 + N after signal N.\n"
           ".SH SEE ALSO\nThe library: kvtile.h (pkg\\-config kvtile).\n");
    return 0;
}

int main(int argc, char **argv)
{
    cli_exit_init(); /* signals exit with 128 + signo, after cleanup */
    if (argc < 2) return usage(stderr);
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--man")) return man(); /* (hidden: make builds kvtile.1) */
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
