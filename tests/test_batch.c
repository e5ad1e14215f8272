/* test_batch.c - `kvtile batch`, `merge` and `cache` end to end (execs
 * "$KVT_BUILD/kvtile"). References are independent of the batch code:
 * `kvtile ppl --score all` on the same text for nll_sum, a fresh run
 * without caches for answers and for resumed/sharded outputs. */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "t.h"
#include "tproc.h"
#include "base/kvt.h"
#include "tools/json.h"

#define MODEL T_MODEL("tiny-kjv-f32.gguf")
#define NDOC 20

static char dir[64] = "/tmp/kvt-batch-XXXXXX";
static char bin[4096];


/* Lines of a file (up to max), each malloc'ed. */
static int read_lines(const char *path, char **lines, int max)
{
    char *s = t_slurp(path, NULL);
    if (!s) return -1;
    int n = 0;
    for (char *p = s, *e; *p && n < max; p = e + 1) {
        e = strchr(p, '\n');
        if (!e) e = p + strlen(p);
        lines[n++] = strndup(p, (size_t)(e - p));
        if (!*e) break;
    }
    free(s);
    return n;
}

static void free_lines(char **l, int n) { for (int i = 0; i < n; i++) free(l[i]); }

/* Parse LINE into f (*root owns the strings: jrec_free it). */
static int parse(const char *line, struct jrec_field *f, struct json_t **root)
{
    size_t l = strlen(line);
    return jrec_parse(line, l, f, 32, root, NULL);
}

static double num(const struct jrec_field *f, int n, const char *k)
{
    const struct jrec_field *x = jrec_get(f, n, k);
    return x && x->type == JREC_NUM ? x->num : -1;
}

static int boolean(const struct jrec_field *f, int n, const char *k)
{
    const struct jrec_field *x = jrec_get(f, n, k);
    return x && x->type == JREC_BOOL ? x->b : -1;
}

static const char *str(const struct jrec_field *f, int n, const char *k)
{
    const struct jrec_field *x = jrec_get(f, n, k);
    return x && x->type == JREC_STR ? x->str : "";
}

/* The source text of a number member (exact digits). */
static void num_text(const char *line, const char *key, char *out, size_t cap)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(line, pat);
    out[0] = 0;
    if (!p) return;
    p += strlen(pat);
    size_t n = strcspn(p, ",}");
    snprintf(out, cap, "%.*s", (int)KVT_MIN(n, cap - 1), p);
}

/* Write NDOC chunks of the New Testament (500..2000 chars, whole verses)
 * as text files and as a JSONL with "text". */
static int make_docs(void)
{
    char *nt = t_slurp(T_DATA("kjv-nt.txt"), NULL);
    if (!nt) return -1;
    char path[256];
    snprintf(path, sizeof path, "%s/docs.jsonl", dir);
    FILE *j = fopen(path, "w");
    const char *p = nt;
    for (int i = 0; i < NDOC; i++) {
        size_t want = 500 + (size_t)(i * 79) % 1500, n = 0;
        while (p[n] && n < want) {
            const char *e = strchr(p + n, '\n');
            n = e ? (size_t)(e - p) + 1 : strlen(p);
        }
        snprintf(path, sizeof path, "%s/txt/doc%02d.txt", dir, i);
        FILE *f = fopen(path, "w");
        fwrite(p, 1, n, f);
        fclose(f);
        fprintf(j, "{\"id\": \"doc%02d\", \"text\": \"", i);
        for (size_t k = 0; k < n; k++) {
            if (p[k] == '\n') fputs("\\n", j);
            else if (p[k] == '"' || p[k] == '\\') fprintf(j, "\\%c", p[k]);
            else fputc(p[k], j);
        }
        fprintf(j, "\", \"question\": \"Who is the son of David?\"}\n");
        p += n;
    }
    fclose(j);
    free(nt);
    return 0;
}

static void test_score_cache(void)
{
    T_CHECK(t_system("%s batch %s -i %s/docs.jsonl -o %s/s1.jsonl --cache-dir %s/cache --quiet",
               bin, MODEL, dir, dir, dir) == 0);
    T_CHECK(t_system("%s batch %s -i %s/docs.jsonl -o %s/s2.jsonl --cache-dir %s/cache --quiet",
               bin, MODEL, dir, dir, dir) == 0);
    char p1[256], p2[256], *l1[NDOC + 1], *l2[NDOC + 1];
    snprintf(p1, sizeof p1, "%s/s1.jsonl", dir);
    snprintf(p2, sizeof p2, "%s/s2.jsonl", dir);
    int n1 = read_lines(p1, l1, NDOC + 1), n2 = read_lines(p2, l2, NDOC + 1);
    T_CHECK(n1 == NDOC && n2 == NDOC);
    int hits = 0;
    for (int i = 0; i < n1 && i < n2; i++) {
        struct jrec_field f1[32], f2[32];
        struct json_t *b1, *b2;
        int m1 = parse(l1[i], f1, &b1), m2 = parse(l2[i], f2, &b2);
        T_CHECK(m1 > 0 && m2 > 0);
        T_CHECK(num(f1, m1, "index") == i && num(f2, m2, "index") == i);
        T_CHECK(boolean(f1, m1, "cache_hit") == 0);
        T_CHECK(num(f1, m1, "prefill_tokens") == num(f1, m1, "tokens"));
        T_CHECK(num(f1, m1, "tokens") > 100);
        hits += boolean(f2, m2, "cache_hit") == 1 && num(f2, m2, "prefill_tokens") == 0;
        char a[64], b[64];
        num_text(l1[i], "nll_sum", a, sizeof a);
        num_text(l2[i], "nll_sum", b, sizeof b);
        T_CHECK(a[0] && !strcmp(a, b)); /* identical, digit for digit */
        double ppl = num(f1, m1, "perplexity"), nll = num(f1, m1, "nll_sum");
        T_NEAR(ppl, exp(nll / num(f1, m1, "scored")), 1e-5 * ppl);
        jrec_free(b1);
        jrec_free(b2);
    }
    T_CHECK(hits == NDOC);
    /* independent reference: kvtile ppl scoring every token of the same
     * text as one chunk gives the same sum (same order, same batches) */
    for (int i = 0; i < n1; i += 7) {
        char cmd[16384], ref[64] = "", got[64];
        snprintf(cmd, sizeof cmd, "%s ppl %s -f %s/txt/doc%02d.txt --score all -c 100000 "
                 "--kv-store ram --json", bin, MODEL, dir, i);
        FILE *p = popen(cmd, "r");
        char out[4096] = "";
        if (p) { size_t k = fread(out, 1, sizeof out - 1, p); out[k] = 0; pclose(p); }
        const char *s = strstr(out, "\"nll_sum\": ");
        if (s) snprintf(ref, sizeof ref, "%.*s", (int)strcspn(s + 11, ","), s + 11);
        num_text(l1[i], "nll_sum", got, sizeof got);
        if (strcmp(ref, got)) fprintf(stderr, "  doc %d: ppl says %s, batch %s\n", i, ref, got);
        T_CHECK(ref[0] && !strcmp(ref, got));
    }
    /* the directory form gives the same numbers (ids are file names) */
    T_CHECK(t_system("%s batch %s -i %s/txt -o %s/s3.jsonl --quiet", bin, MODEL, dir, dir) == 0);
    char p3[256], *l3[NDOC + 1];
    snprintf(p3, sizeof p3, "%s/s3.jsonl", dir);
    int n3 = read_lines(p3, l3, NDOC + 1);
    T_CHECK(n3 == NDOC);
    for (int i = 0; i < n3 && i < n1; i++) {
        char a[64], b[64], id[32];
        num_text(l1[i], "nll_sum", a, sizeof a);
        num_text(l3[i], "nll_sum", b, sizeof b);
        T_CHECK(!strcmp(a, b));
        snprintf(id, sizeof id, "\"id\":\"doc%02d.txt\"", i);
        T_CHECK(strstr(l3[i], id) != NULL);
    }
    /* cache ls / gc */
    char lsout[256];
    snprintf(lsout, sizeof lsout, "%s/ls.txt", dir);
    T_CHECK(t_system("%s cache ls %s/cache --json > %s", bin, dir, lsout) == 0);
    char *ls[NDOC + 2];
    int nl = read_lines(lsout, ls, NDOC + 2);
    T_CHECK(nl == NDOC);
    free_lines(ls, nl > 0 ? nl : 0);
    T_CHECK(t_system("%s cache gc --max-bytes 0 %s/cache > /dev/null", bin, dir) == 0);
    T_CHECK(t_system("test -z \"$(ls %s/cache)\"", dir) == 0);
    free_lines(l1, n1 > 0 ? n1 : 0);
    free_lines(l2, n2 > 0 ? n2 : 0);
    free_lines(l3, n3 > 0 ? n3 : 0);
}

static void test_generate_cache(void)
{
    /* 3 documents; a first question fills the caches, a second question on
     * the same documents hits them; a fresh run (no cache) of the second
     * question is the reference answer */
    T_CHECK(t_system("head -n 3 %s/docs.jsonl > %s/g1.jsonl && sed 's/Who is the son of David?/"
               "What did Jesus say?/' %s/g1.jsonl > %s/g2.jsonl", dir, dir, dir, dir) == 0);
    const char *opts = "--task generate -n 10 --quiet";
    T_CHECK(t_system("%s batch %s -i %s/g1.jsonl -o %s/ga.jsonl --cache-dir %s/gcache %s", bin, MODEL, dir, dir, dir, opts) == 0);
    T_CHECK(t_system("%s batch %s -i %s/g2.jsonl -o %s/gb.jsonl --cache-dir %s/gcache %s", bin, MODEL, dir, dir, dir, opts) == 0);
    T_CHECK(t_system("%s batch %s -i %s/g2.jsonl -o %s/gc.jsonl %s", bin, MODEL, dir, dir, opts) == 0);
    char pa[256], pb[256], pc[256], *la[4], *lb[4], *lc[4];
    snprintf(pa, sizeof pa, "%s/ga.jsonl", dir);
    snprintf(pb, sizeof pb, "%s/gb.jsonl", dir);
    snprintf(pc, sizeof pc, "%s/gc.jsonl", dir);
    int na = read_lines(pa, la, 4), nb = read_lines(pb, lb, 4), nc = read_lines(pc, lc, 4);
    T_CHECK(na == 3 && nb == 3 && nc == 3);
    for (int i = 0; i < 3 && i < na && i < nb && i < nc; i++) {
        struct jrec_field fa[32], fb[32], fc[32];
        struct json_t *ba, *bb, *bc;
        int ma = parse(la[i], fa, &ba), mb = parse(lb[i], fb, &bb), mc = parse(lc[i], fc, &bc);
        T_CHECK(ma > 0 && mb > 0 && mc > 0);
        T_CHECK(boolean(fa, ma, "cache_hit") == 0);
        T_CHECK(num(fa, ma, "prefill_tokens") == num(fa, ma, "doc_tokens"));
        T_CHECK(boolean(fb, mb, "cache_hit") == 1);
        T_CHECK(num(fb, mb, "prefill_tokens") == 0);
        T_CHECK(num(fb, mb, "doc_tokens") == num(fa, ma, "doc_tokens"));
        T_CHECK(num(fb, mb, "question_tokens") > 3);
        T_CHECK(num(fb, mb, "answer_tokens") == 10);
        T_CHECK(!strcmp(str(fb, mb, "answer"), str(fc, mc, "answer")));
        T_CHECK(strlen(str(fb, mb, "answer")) > 0);
        jrec_free(ba); jrec_free(bb); jrec_free(bc);
    }
    /* a stop string cuts the answer before it */
    T_CHECK(t_system("%s batch %s -i %s/g2.jsonl -o %s/gd.jsonl --task generate -n 10 --stop ' ' --quiet",
               bin, MODEL, dir, dir) == 0);
    char pd[256], *ld[4];
    snprintf(pd, sizeof pd, "%s/gd.jsonl", dir);
    int nd = read_lines(pd, ld, 4);
    T_CHECK(nd == 3);
    for (int i = 0; i < nd; i++) {
        struct jrec_field f[32];
        struct json_t *b;
        int m = parse(ld[i], f, &b);
        T_CHECK(m > 0 && strchr(str(f, m, "answer"), ' ') == NULL);
        T_CHECK(!strcmp(str(f, m, "finish"), "stop") || !strcmp(str(f, m, "finish"), "eos") ||
                num(f, m, "answer_tokens") == 10);
        jrec_free(b);
    }
    free_lines(la, na > 0 ? na : 0); free_lines(lb, nb > 0 ? nb : 0);
    free_lines(lc, nc > 0 ? nc : 0); free_lines(ld, nd > 0 ? nd : 0);
}

/* docs.jsonl with bad records mixed in (lines 3, 6, 9, 12). */
static void make_bad_input(void)
{
    char path[256];
    snprintf(path, sizeof path, "%s/bad.bin", dir);
    FILE *f = fopen(path, "wb");
    fputs("valid start \xff\xfe then junk\n", f);
    fclose(f);
    T_CHECK(t_system("cd %s && { head -n 2 docs.jsonl; echo '{\"id\": \"broken\", \"text\": '; "
               "sed -n 3,4p docs.jsonl; echo '{\"id\": \"nofile\", \"path\": \"no/such.txt\"}'; "
               "sed -n 5,6p docs.jsonl; echo '{\"id\": \"latin1\", \"path\": \"bad.bin\"}'; "
               "sed -n 7,8p docs.jsonl; printf '{\"id\": \"raw\", \"text\": \"caf\\351\"}\\n'; "
               "sed -n 9,12p docs.jsonl; } > mixed.jsonl", dir) == 0);
}

static void test_bad_input(void)
{
    make_bad_input();
    T_CHECK(t_system("%s batch %s -i %s/mixed.jsonl -o %s/m.jsonl --no-timings --quiet 2> %s/m.err",
               bin, MODEL, dir, dir, dir) == 0);
    char p[256], *l[32];
    snprintf(p, sizeof p, "%s/m.jsonl", dir);
    int n = read_lines(p, l, 32);
    T_CHECK(n == 16);
    int errors = 0, ok = 0;
    for (int i = 0; i < n; i++) {
        struct jrec_field f[32];
        struct json_t *b;
        int m = parse(l[i], f, &b);
        T_CHECK(m > 0 && num(f, m, "index") == i);
        if (jrec_get(f, m, "error")) errors++;
        else ok += num(f, m, "nll_sum") > 0;
        jrec_free(b);
    }
    T_CHECK(errors == 4 && ok == 12);
    T_CHECK(l[2] && strstr(l[2], "\"id\":null") && strstr(l[2], "malformed JSON"));
    T_CHECK(l[5] && strstr(l[5], "\"id\":\"nofile\"") && strstr(l[5], "No such file"));
    T_CHECK(l[8] && strstr(l[8], "\"id\":\"latin1\"") && strstr(l[8], "not valid UTF-8"));
    T_CHECK(l[11] && strstr(l[11], "\"id\":null") && strstr(l[11], "not valid UTF-8")); /* the line did not parse */
    snprintf(p, sizeof p, "%s/m.err", dir);
    char *err = t_slurp(p, NULL);
    T_CHECK(err && strstr(err, "mixed.jsonl:3: malformed JSON"));
    T_CHECK(err && strstr(err, "mixed.jsonl:12: text is not valid UTF-8"));
    T_CHECK(err && strstr(err, "no/such.txt: No such file or directory"));
    T_CHECK(err && strstr(err, "bad.bin: text is not valid UTF-8"));
    free(err);
    /* the good documents score as in the clean input */
    char cp[256], *c[NDOC + 1];
    snprintf(cp, sizeof cp, "%s/s1.jsonl", dir);
    int nc = read_lines(cp, c, NDOC + 1);
    if (nc >= 2 && n >= 2) {
        char a[64], b2[64];
        num_text(c[1], "nll_sum", a, sizeof a);
        num_text(l[1], "nll_sum", b2, sizeof b2);
        T_CHECK(!strcmp(a, b2));
    }
    free_lines(c, nc > 0 ? nc : 0);
    free_lines(l, n > 0 ? n : 0);
}

static void test_shards(void)
{
    const char *o = "--no-timings --quiet";
    T_CHECK(t_system("%s batch %s -i %s/mixed.jsonl -o %s/all.jsonl %s", bin, MODEL, dir, dir, o) == 0);
    for (int s = 0; s < 3; s++)
        T_CHECK(t_system("%s batch %s -i %s/mixed.jsonl -o %s/sh%d.jsonl --shard %d/3 %s",
                   bin, MODEL, dir, dir, s, s, o) == 0);
    T_CHECK(t_system("%s merge %s/merged.jsonl %s/sh2.jsonl %s/sh0.jsonl %s/sh1.jsonl", bin, dir, dir, dir, dir) == 0);
    T_CHECK(t_system("cmp -s %s/all.jsonl %s/merged.jsonl", dir, dir) == 0);
    T_CHECK(t_system("test $(wc -l < %s/sh1.jsonl) -eq 5", dir) == 0); /* indices 1,4,7,10,13 */
    /* a shard left out is an error */
    T_CHECK(t_system("%s merge %s/m2.jsonl %s/sh0.jsonl %s/sh2.jsonl 2>/dev/null", bin, dir, dir, dir) != 0);
}

static int count_lines(const char *path)
{
    char *s = t_slurp(path, NULL);
    if (!s) return 0;
    int n = 0;
    for (char *p = s; *p; p++) n += *p == '\n';
    free(s);
    return n;
}

/* Output lines with the run-dependent fields (from ,"cache_hit" on) cut. */
static char *content(const char *path)
{
    char *s = t_slurp(path, NULL);
    if (!s) return NULL;
    char *w = s;
    for (char *r = s; *r;) {
        if (!strncmp(r, ",\"cache_hit\":", 13)) { while (*r && *r != '\n') r++; *w++ = '}'; continue; }
        *w++ = *r++;
    }
    *w = 0;
    return s;
}

static void test_resume(void)
{
    /* a long document at index 5 (~3000 tokens) so the kill lands inside
     * a prefill with checkpoints every 512 tokens */
    T_CHECK(t_system("sed -n 2000,2130p %s > %s/long.txt", T_DATA("kjv-nt.txt"), dir) == 0);
    T_CHECK(t_system("cd %s && { head -n 5 docs.jsonl; printf '{\"id\": \"long\", \"path\": \"long.txt\"}\\n'; "
               "sed -n 6,12p docs.jsonl; } > r.jsonl", dir) == 0);
    const char *o = "--checkpoint 512 --quiet";
    T_CHECK(t_system("%s batch %s -i %s/r.jsonl -o %s/r-ref.jsonl %s", bin, MODEL, dir, dir, o) == 0);
    char journal[256], cache[256];
    snprintf(journal, sizeof journal, "%s/r.jsonl.out.journal", dir);
    snprintf(cache, sizeof cache, "%s/rcache", dir);
    pid_t pid = fork();
    if (pid == 0) {
        char in[256], out[256];
        snprintf(in, sizeof in, "%s/r.jsonl", dir);
        snprintf(out, sizeof out, "%s/r.jsonl.out", dir);
        execl(bin, bin, "batch", MODEL, "-i", in, "-o", out, "--cache-dir", cache,
              "--checkpoint", "512", "--quiet", (char *)NULL);
        _exit(127);
    }
    /* kill -9 once 5 documents are in the journal (header + 5 lines) and
     * the long document has checkpointed at least once */
    int killed_in_long = 0;
    for (int t = 0; t < 3000; t++) {
        usleep(5000);
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) { pid = -1; break; }
        if (count_lines(journal) < 6) continue;
        int n_side = t_system("test $(find %s -name '*.kvm' -size +1000c | wc -l) -ge 6", cache) == 0;
        if (!n_side) continue;
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
        pid = -1;
        killed_in_long = count_lines(journal) == 6;
        break;
    }
    T_CHECK(pid == -1);
    fprintf(stderr, "  killed inside the long document: %s\n", killed_in_long ? "yes" : "no");
    char out[256], ref[256];
    snprintf(out, sizeof out, "%s/r.jsonl.out", dir);
    snprintf(ref, sizeof ref, "%s/r-ref.jsonl", dir);
    T_CHECK(access(out, F_OK) != 0); /* no output before the end */
    T_CHECK(t_system("%s batch %s -i %s/r.jsonl -o %s --cache-dir %s %s --resume 2> %s/r.err",
               bin, MODEL, dir, out, cache, "--checkpoint 512", dir) == 0);
    char *a = content(out), *b = content(ref);
    T_CHECK(a && b && !strcmp(a, b));
    T_CHECK(access(journal, F_OK) != 0);
    if (killed_in_long) {
        /* the long document continued from its partial cache */
        char *l[16];
        int n = read_lines(out, l, 16);
        struct jrec_field f[32];
        struct json_t *buf;
        int m = n > 5 ? parse(l[5], f, &buf) : -1;
        T_CHECK(m > 0);
        if (m > 0) {
            double pre = num(f, m, "prefill_tokens"), tokens = num(f, m, "tokens");
            fprintf(stderr, "  long document: %g tokens, %g evaluated after the resume\n", tokens, pre);
            T_CHECK(boolean(f, m, "cache_hit") == 0);
            T_CHECK(pre > 0 && pre < tokens && tokens > 1000);
            jrec_free(buf);
        }
        free_lines(l, n > 0 ? n : 0);
    }
    free(a);
    free(b);
    /* a journal of another run is refused */
    T_CHECK(t_system("printf '{\"kvtile_journal\":1,\"run\":\"0\"}\\n' > %s/x.journal && "
               "%s batch %s -i %s/r.jsonl -o %s/x --resume --quiet 2>/dev/null", dir, bin, MODEL, dir, dir) != 0);
}

static void test_disk_full(void)
{
    char mnt[256];
    snprintf(mnt, sizeof mnt, "%s/small", dir);
    mkdir(mnt, 0755);
    if (mount("tmpfs", mnt, "tmpfs", 0, "size=3M") != 0) T_SKIP("cannot mount a small tmpfs");
    int rc = t_system("%s batch %s -i %s/docs.jsonl -o %s/full.jsonl --cache-dir %s --quiet 2> %s/full.err",
                bin, MODEL, dir, dir, mnt, dir);
    T_CHECK(rc == 1);
    char p[256];
    snprintf(p, sizeof p, "%s/full.err", dir);
    char *err = t_slurp(p, NULL);
    T_CHECK(err && strstr(err, "No space left on device") && count_lines(p) == 1);
    if (err) fprintf(stderr, "  %s", err);
    free(err);
    /* finished documents are intact in the journal; no output file */
    snprintf(p, sizeof p, "%s/full.jsonl.journal", dir);
    char *l[NDOC + 2];
    int n = read_lines(p, l, NDOC + 2);
    T_CHECK(n >= 2 && n < NDOC + 1);
    for (int i = 1; i < n; i++) { /* records: 16 hex digits of checksum, ' ', the line */
        struct jrec_field f[32];
        struct json_t *b = NULL;
        T_CHECK(strlen(l[i]) > 17 && l[i][16] == ' ');
        int m = strlen(l[i]) > 17 ? parse(l[i] + 17, f, &b) : -1;
        T_CHECK(m > 0 && num(f, m, "index") == i - 1 && num(f, m, "nll_sum") > 0);
        jrec_free(b);
    }
    free_lines(l, n > 0 ? n : 0);
    snprintf(p, sizeof p, "%s/full.jsonl", dir);
    T_CHECK(access(p, F_OK) != 0);
    umount2(mnt, MNT_DETACH);
}

int main(void)
{
    const char *b = getenv("KVT_BUILD");
    snprintf(bin, sizeof bin, "%s/kvtile", b && *b ? b : "build");
    char *abs = realpath(bin, NULL); /* the resume test execs it from a fork */
    if (abs && strlen(abs) < sizeof bin) memcpy(bin, abs, strlen(abs) + 1);
    free(abs);
    if (access(bin, X_OK) != 0 || access(MODEL, R_OK) != 0) {
        fprintf(stderr, "%s: no %s or model\n", t_ci_() ? "missing under CI" : "skip", bin);
        if (t_ci_()) { printf("0 passed, 1 failed, 0 skipped\n"); return 1; }
        return 77;
    }
    if (!mkdtemp(dir)) return 1;
    t_system("mkdir -p %s/txt", dir);
    if (make_docs() < 0) return 1;
    T_RUN(test_score_cache);
    T_RUN(test_generate_cache);
    T_RUN(test_bad_input);
    T_RUN(test_shards);
    T_RUN(test_resume);
    T_RUN(test_disk_full);
    int rc = t_done();
    if (rc == 0) t_system("rm -rf %s", dir);
    else fprintf(stderr, "kept %s\n", dir);
    return rc;
}
