/* opt.c - option tables: parsing and help (see opt.h). */
#include "opt.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "base/kvt.h"

/* One line on stderr, "kvtile CMD: problem (see kvtile CMD --help)", exit 2. */
__attribute__((format(printf, 2, 3)))
_Noreturn static void opt_die(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "kvtile %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (see kvtile %s --help)\n", cmd);
    va_end(ap);
    exit(2);
}

void opt_usage(const char *cmd, const char *usage)
{
    fprintf(stderr, "usage: kvtile %s %s   (kvtile %s --help for the options)\n", cmd, usage, cmd);
    exit(2);
}

/* "a|b|c" of a choice list into BUF. */
static const char *choice_list(const struct opt *o, char *buf, size_t cap)
{
    size_t w = 0;
    buf[0] = 0;
    for (int i = 0; o->choices[i]; i++)
        w += (size_t)snprintf(buf + w, w < cap ? cap - w : 0, "%s%s", i ? "|" : "", o->choices[i]);
    return buf;
}

/* The default as shown: the row's text, else the field's value now. */
static const char *default_text(const struct opt *o, char *buf, size_t cap)
{
    if (o->def) return o->def;
    switch (o->type) {
    case OPT_T_STR: {
        const char *s = *(const char *const *)o->field;
        return s && *s ? s : NULL;
    }
    case OPT_T_INT: snprintf(buf, cap, "%d", *(const int *)o->field); return buf;
    case OPT_T_I64: snprintf(buf, cap, "%" PRId64, *(const int64_t *)o->field); return buf;
    case OPT_T_U64: snprintf(buf, cap, "%" PRIu64, *(const uint64_t *)o->field); return buf;
    case OPT_T_DOUBLE: snprintf(buf, cap, "%g", *(const double *)o->field); return buf;
    case OPT_T_BYTES: {
        size_t v = *(const size_t *)o->field;
        if (!v) return NULL;
        snprintf(buf, cap, "%zu", v);
        return buf;
    }
    case OPT_T_CHOICE: {
        int v = *(const int *)o->field;
        for (int i = 0; o->choices[i]; i++)
            if (i == v) return o->choices[i];
        return NULL;
    }
    default: return NULL;
    }
}

void opt_help(FILE *f, const char *cmd, const char *usage, const struct opt *tab)
{
    fprintf(f, "usage: kvtile %s %s\n", cmd, usage);
    for (const struct opt *o = tab; o->type != OPT_T_END; o++) {
        if (o->type == OPT_T_GROUP) { fprintf(f, "%s\n", o->name); continue; }
        char left[256], cl[256], dbuf[64];
        const char *arg = o->type == OPT_T_CHOICE ? choice_list(o, cl, sizeof cl) : o->arg;
        snprintf(left, sizeof left, "%s%s%s%s%s", o->alias ? o->alias : "", o->alias ? ", " : "",
                 o->name, arg ? " " : "", arg ? arg : "");
        fprintf(f, "  %-24s", left);
        if (strlen(left) > 24) fprintf(f, "\n  %-24s", "");
        for (const char *h = o->help; *h; h++) {
            if (*h == '\n') fprintf(f, "\n  %-24s", "");
            else fputc(*h, f);
        }
        const char *d = o->type == OPT_T_FLAG || (o->type == OPT_T_FN && !o->def)
                        ? NULL : default_text(o, dbuf, sizeof dbuf);
        if (d) fprintf(f, " (default %s)", d);
        fputc('\n', f);
    }
}

static int man_mode;

void opt_set_man(int on) { man_mode = on; }

/* S as roff text: '-' and '\\' escaped, a leading '.' or '\'' guarded. */
static void roff_text(FILE *f, const char *s)
{
    if (*s == '.' || *s == '\'') fputs("\\&", f);
    for (; *s; s++) {
        if (*s == '-') fputs("\\-", f);
        else if (*s == '\\') fputs("\\e", f);
        else if (*s == '\n') {
            fputc('\n', f);
            if (s[1] == '.' || s[1] == '\'') fputs("\\&", f);
        } else fputc(*s, f);
    }
}

void opt_man(FILE *f, const char *cmd, const char *usage, const struct opt *tab)
{
    fputs(".SS kvtile ", f);
    roff_text(f, cmd);
    fputs("\n.B kvtile ", f);
    roff_text(f, cmd);
    fputs("\n", f);
    roff_text(f, usage);
    fputs("\n", f);
    for (const struct opt *o = tab; o->type != OPT_T_END; o++) {
        if (o->type == OPT_T_GROUP) {
            fputs(".PP\n.I ", f);
            roff_text(f, o->name);
            fputs("\n", f);
            continue;
        }
        char left[256], cl[256], dbuf[64];
        const char *arg = o->type == OPT_T_CHOICE ? choice_list(o, cl, sizeof cl) : o->arg;
        snprintf(left, sizeof left, "%s%s%s", o->alias ? o->alias : "", o->alias ? ", " : "",
                 o->name);
        fputs(".TP\n\\fB", f);
        roff_text(f, left);
        fputs("\\fR", f);
        if (arg) {
            fputs(" \\fI", f);
            roff_text(f, arg);
            fputs("\\fR", f);
        }
        fputs("\n", f);
        roff_text(f, o->help);
        const char *d = o->type == OPT_T_FLAG || (o->type == OPT_T_FN && !o->def)
                        ? NULL : default_text(o, dbuf, sizeof dbuf);
        if (d) {
            fputs(" (default ", f);
            roff_text(f, d);
            fputs(")", f);
        }
        fputs("\n", f);
    }
}

static int matches(const struct opt *o, const char *a, size_t n)
{
    return (strlen(o->name) == n && !strncmp(o->name, a, n)) ||
           (o->alias && strlen(o->alias) == n && !strncmp(o->alias, a, n));
}

static double parse_num(const char *cmd, const struct opt *o, const char *v)
{
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (end == v || errno || !isfinite(x)) opt_die(cmd, "%s: '%s' is not a number", o->name, v);
    if (o->type != OPT_T_DOUBLE) {
        if (*end == 'k' || *end == 'K') { x *= 1024; end++; }
        else if (*end == 'm' || *end == 'M') { x *= 1024 * 1024; end++; }
        if (x != floor(x)) opt_die(cmd, "%s: '%s' is not a whole number", o->name, v);
    }
    if (*end) opt_die(cmd, "%s: '%s' is not a number", o->name, v);
    return x;
}

static void set_value(const char *cmd, const struct opt *o, const char *v)
{
    switch (o->type) {
    case OPT_T_STR: *(const char **)o->field = v; break;
    case OPT_T_INT: case OPT_T_I64: case OPT_T_DOUBLE: {
        double x = parse_num(cmd, o, v);
        if (x < o->min || x > o->max)
            opt_die(cmd, "%s: '%s' is out of range (%g .. %g)", o->name, v, o->min, o->max);
        if (o->type == OPT_T_INT) *(int *)o->field = (int)x;
        else if (o->type == OPT_T_I64) *(int64_t *)o->field = (int64_t)x;
        else *(double *)o->field = x;
        break;
    }
    case OPT_T_U64: {
        char *end;
        errno = 0;
        unsigned long long x = strtoull(v, &end, 0);
        if (end == v || *end || errno || v[0] == '-')
            opt_die(cmd, "%s: '%s' is not a whole number", o->name, v);
        *(uint64_t *)o->field = (uint64_t)x;
        break;
    }
    case OPT_T_BYTES: *(size_t *)o->field = cli_parse_bytes(o->name, v); break;
    case OPT_T_CHOICE: {
        for (int i = 0; o->choices[i]; i++)
            if (!strcmp(o->choices[i], v)) { *(int *)o->field = i; return; }
        char cl[256];
        opt_die(cmd, "%s: '%s' (expected %s)", o->name, v, choice_list(o, cl, sizeof cl));
    }
    case OPT_T_FN: o->fn(o->field, o->name, v); break;
    default: break;
    }
}

/* A name or alias given twice in one table is a programmer error. */
static void check_table(const struct opt *tab)
{
    for (const struct opt *a = tab; a->type != OPT_T_END; a++) {
        if (a->type == OPT_T_GROUP) continue;
        KVT_ASSERT(a->name && a->name[0] == '-');
        for (const struct opt *b = a + 1; b->type != OPT_T_END; b++) {
            if (b->type == OPT_T_GROUP) continue;
            KVT_ASSERT(strcmp(a->name, b->name) != 0);
            KVT_ASSERT(!a->alias || !b->alias || strcmp(a->alias, b->alias) != 0);
            KVT_ASSERT(!a->alias || strcmp(a->alias, b->name) != 0);
            KVT_ASSERT(!b->alias || strcmp(b->alias, a->name) != 0);
        }
    }
}

int opt_parse(const char *cmd, const char *usage, const struct opt *tab,
              int argc, char **argv, const char **pos, int max_pos)
{
    check_table(tab);
    int n_pos = 0, only_pos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (only_pos || a[0] != '-' || !a[1]) {
            if (n_pos == max_pos) opt_die(cmd, "unexpected argument '%s'", a);
            pos[n_pos++] = a;
            continue;
        }
        if (!strcmp(a, "--")) { only_pos = 1; continue; }
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            if (man_mode) opt_man(stdout, cmd, usage, tab);
            else opt_help(stdout, cmd, usage, tab);
            exit(0);
        }
        const char *eq = a[1] == '-' ? strchr(a, '=') : NULL;
        size_t n = eq ? (size_t)(eq - a) : strlen(a);
        const struct opt *o = tab;
        while (o->type != OPT_T_END && (o->type == OPT_T_GROUP || !matches(o, a, n))) o++;
        if (o->type == OPT_T_END) opt_die(cmd, "unknown option '%.*s'", (int)n, a);
        if (o->type == OPT_T_FLAG) {
            if (eq) opt_die(cmd, "%s takes no value", o->name);
            *(int *)o->field = 1;
            continue;
        }
        const char *v = eq ? eq + 1 : NULL;
        if (!v) {
            if (i + 1 >= argc) opt_die(cmd, "%s needs a value", o->name);
            v = argv[++i];
        }
        set_value(cmd, o, v);
    }
    return n_pos;
}
