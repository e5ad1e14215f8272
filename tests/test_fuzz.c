/* test_fuzz.c - replay every fuzz corpus (tests/fuzz/corpus/NAME/) through
 * the plain replay build of its target ($KVT_BUILD/fuzz/NAME-replay): the
 * inputs that once found bugs, and the seeds, keep passing in `make test`.
 * A replay program aborts (KVT_ASSERT) or crashes on a property violation;
 * exit status 0 is a pass. */
#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "t.h"

static void replay(const char *name)
{
    const char *b = getenv("KVT_BUILD");
    char bin[512], dir[512], cmd[2048];
    snprintf(bin, sizeof bin, "%s/fuzz/%s-replay", b && *b ? b : "build", name);
    snprintf(dir, sizeof dir, "tests/fuzz/corpus/%s", name);
    T_REQUIRE(access(bin, X_OK) == 0, "replay program not built");
    DIR *d = opendir(dir);
    T_REQUIRE(d != NULL, "corpus directory missing");
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) n += e->d_name[0] != '.';
    closedir(d);
    T_CHECK(n > 0);
    snprintf(cmd, sizeof cmd, "%s %s/*", bin, dir);
    int st = system(cmd);
    T_CHECK(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    fprintf(stderr, "  %s: %d inputs replayed\n", name, n);
}

static void test_tile(void) { replay("fuzz_tile"); }
static void test_kvs(void) { replay("fuzz_kvs"); }
static void test_jsonl(void) { replay("fuzz_jsonl"); }
static void test_factors(void) { replay("fuzz_factors"); }
static void test_gguf(void) { replay("fuzz_gguf"); }
static void test_tok(void) { replay("fuzz_tok"); }
static void test_sidecar(void) { replay("fuzz_sidecar"); }
static void test_journal(void) { replay("fuzz_journal"); }

int main(void)
{
    T_RUN(test_tile);
    T_RUN(test_kvs);
    T_RUN(test_jsonl);
    T_RUN(test_factors);
    T_RUN(test_gguf);
    T_RUN(test_tok);
    T_RUN(test_sidecar);
    T_RUN(test_journal);
    return t_done();
}
