/* opt.h - command-line options declared once, in a table per command
 * (git's parse-options, curl's option table): parsing and `--help` both
 * come from the table, so an option cannot exist without its help line or
 * be documented without being parsed.
 *
 * A table is an array of struct opt ended by OPT_END(), built where the
 * fields live (each row points at the variable it sets):
 *
 *     struct opt tab[] = {
 *         OPT_STR("-f", NULL, "FILE", &file, "text to score"),
 *         OPT_INT("--bucket", NULL, "N", &bucket, 1, 1 << 20, "curve bucket size"),
 *         CLI_OPTS_RUN(&o),
 *         OPT_END(),
 *     };
 *     int n = opt_parse("ppl", "MODEL -f FILE [options]", tab, argc, argv, pos, 1);
 *
 * Adding an option is adding one row. An option not in the table, a
 * missing value or a value out of range is a one-line error naming the
 * command and exit status 2; `-h` / `--help` prints the generated help on
 * stdout and exits 0. `--name=value` and `--name value` are both accepted.
 * The default shown in the help is the field's value before parsing (so it
 * cannot drift from the code) unless the row gives a text for it.
 */
#ifndef KVT_OPT_H
#define KVT_OPT_H

#include <stdint.h>
#include <stdio.h>

enum opt_type {
    OPT_T_END,
    OPT_T_GROUP,  /* a heading in the help */
    OPT_T_FLAG,   /* int = 1 */
    OPT_T_STR,    /* const char * = the value */
    OPT_T_INT,    /* int in [min, max]; counts take k / M suffixes */
    OPT_T_I64,    /* int64_t in [min, max] */
    OPT_T_U64,    /* uint64_t (seeds) */
    OPT_T_BYTES,  /* size_t; 64M, 1G */
    OPT_T_DOUBLE, /* double in [min, max] */
    OPT_T_CHOICE, /* int = index of the value in choices (NULL-ended) */
    OPT_T_FN,     /* fn(field, name, value) parses and stores (or dies) */
};

struct opt {
    enum opt_type type;
    const char *name;    /* "--kv-store"; a heading for OPT_T_GROUP */
    const char *alias;   /* "-t", or NULL */
    const char *arg;     /* "N" in the help; NULL for flags (and choices) */
    void *field;
    const char *help;    /* '\n' continues on an indented line */
    const char *def;     /* default as shown; NULL: from the field */
    double min, max;
    const char *const *choices;
    void (*fn)(void *field, const char *name, const char *value);
};

/* Rows. A trailing argument may add fields, e.g. `.def = "all cores"` (the
 * default as shown, when the field's value before parsing is a sentinel). */
#define OPT_END() { .type = OPT_T_END }
#define OPT_GROUP(h) { .type = OPT_T_GROUP, .name = (h) }
#define OPT_FLAG(n, a, f, h, ...) \
    { .type = OPT_T_FLAG, .name = (n), .alias = (a), .field = (f), .help = (h), __VA_ARGS__ }
#define OPT_STR(n, a, arg_, f, h, ...) \
    { .type = OPT_T_STR, .name = (n), .alias = (a), .arg = (arg_), .field = (f), .help = (h), \
      __VA_ARGS__ }
#define OPT_INT(n, a, arg_, f, lo, hi, h, ...) \
    { .type = OPT_T_INT, .name = (n), .alias = (a), .arg = (arg_), .field = (f), \
      .min = (lo), .max = (hi), .help = (h), __VA_ARGS__ }
#define OPT_I64(n, a, arg_, f, lo, hi, h, ...) \
    { .type = OPT_T_I64, .name = (n), .alias = (a), .arg = (arg_), .field = (f), \
      .min = (lo), .max = (hi), .help = (h), __VA_ARGS__ }
#define OPT_U64(n, a, arg_, f, h, ...) \
    { .type = OPT_T_U64, .name = (n), .alias = (a), .arg = (arg_), .field = (f), .help = (h), \
      __VA_ARGS__ }
#define OPT_BYTES(n, a, arg_, f, h, ...) \
    { .type = OPT_T_BYTES, .name = (n), .alias = (a), .arg = (arg_), .field = (f), \
      .help = (h), __VA_ARGS__ }
#define OPT_DOUBLE(n, a, arg_, f, lo, hi, h, ...) \
    { .type = OPT_T_DOUBLE, .name = (n), .alias = (a), .arg = (arg_), .field = (f), \
      .min = (lo), .max = (hi), .help = (h), __VA_ARGS__ }
#define OPT_CHOICE(n, a, f, list, h, ...) \
    { .type = OPT_T_CHOICE, .name = (n), .alias = (a), .field = (f), .choices = (list), \
      .help = (h), __VA_ARGS__ }
#define OPT_FN(n, a, arg_, f, fn_, h, ...) \
    { .type = OPT_T_FN, .name = (n), .alias = (a), .arg = (arg_), .field = (f), \
      .fn = (fn_), .help = (h), __VA_ARGS__ }

/* Parse argv[1..argc) against TAB. Positional arguments (anything not
 * starting with '-', and "-" itself) go to pos[0..max_pos) in order; one
 * more is an error. @return the number of positional arguments. Exits with
 * a one-line error on anything else; prints help and exits 0 on -h/--help. */
int opt_parse(const char *cmd, const char *usage, const struct opt *tab,
              int argc, char **argv, const char **pos, int max_pos);

/* The help generated from TAB. */
void opt_help(FILE *f, const char *cmd, const char *usage, const struct opt *tab);

/* The same as a roff section of the man page (.SS, one .TP per option). */
void opt_man(FILE *f, const char *cmd, const char *usage, const struct opt *tab);
/* ON: -h / --help print opt_man instead of opt_help (`kvtile --man`). */
void opt_set_man(int on);

/* "usage: kvtile CMD USAGE (kvtile CMD --help for the options)" on stderr,
 * exit 2: for a missing required argument, after opt_parse. */
_Noreturn void opt_usage(const char *cmd, const char *usage);

#endif
