/* json.c - one JSON object per line, parsed by jansson (see json.h). */
#include "tools/json.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "base/kvt.h"

/* Levels of arrays/objects in V (a scalar is 0, [] and {} are 1). jansson
 * bounds the recursion (JSON_PARSER_MAX_DEPTH = 2048). */
static int depth(json_t *v)
{
    int d = 0;
    size_t i;
    const char *key;
    json_t *x;
    if (json_is_array(v)) {
        json_array_foreach (v, i, x) {
            int k = depth(x);
            d = k > d ? k : d;
        }
        return 1 + d;
    }
    if (json_is_object(v)) {
        json_object_foreach (v, key, x) {
            int k = depth(x);
            d = k > d ? k : d;
        }
        return 1 + d;
    }
    return 0;
}

static void set_err(struct jrec_err *err, size_t off, const char *text)
{
    if (!err) return;
    err->off = off;
    snprintf(err->text, sizeof err->text, "%s", text);
}

static void field(struct jrec_field *f, const char *key, size_t key_len, const json_t *v)
{
    memset(f, 0, sizeof *f);
    f->key = key;
    f->key_len = key_len;
    f->val = v;
    switch (json_typeof(v)) {
    case JSON_STRING:
        f->type = JREC_STR;
        f->str = json_string_value(v);
        f->str_len = json_string_length(v);
        break;
    case JSON_INTEGER:
        f->type = JREC_NUM;
        f->num = (double)json_integer_value(v);
        snprintf(f->num_text, sizeof f->num_text, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        break;
    case JSON_REAL:
        f->type = JREC_NUM;
        f->num = json_real_value(v);
        snprintf(f->num_text, sizeof f->num_text, "%.17g", f->num);
        break;
    case JSON_TRUE:
    case JSON_FALSE:
        f->type = JREC_BOOL;
        f->b = json_is_true(v);
        break;
    case JSON_NULL:
        f->type = JREC_NULL;
        break;
    default:
        f->type = JREC_NEST;
        break;
    }
    if (f->type == JREC_NUM) {
        f->str = f->num_text;
        f->str_len = strlen(f->num_text);
    }
}

int jrec_parse(const char *text, size_t len, struct jrec_field *fields, int fields_cap,
               struct json_t **root, struct jrec_err *err)
{
    json_error_t je;
    *root = NULL;
    json_t *o = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!o) {
        set_err(err, (size_t)je.position, je.text);
        enum json_error_code c = json_error_code(&je);
        if (c == json_error_invalid_utf8) return KVT_EUTF8;
        if (c == json_error_out_of_memory) return -ENOMEM;
        return KVT_EFORMAT;
    }
    int rc = 0;
    if (!json_is_object(o)) {
        set_err(err, 0, "not a JSON object");
        rc = KVT_EFORMAT;
    } else if (json_object_size(o) > (size_t)fields_cap) {
        set_err(err, 0, "too many members");
        rc = -ENOSPC;
    } else if (depth(o) > 1 + JREC_MAX_DEPTH) {
        set_err(err, 0, "nested too deeply");
        rc = KVT_EFORMAT;
    }
    if (rc < 0) {
        json_decref(o);
        return rc;
    }
    int n = 0;
    const char *key;
    size_t key_len;
    json_t *v;
    json_object_keylen_foreach (o, key, key_len, v) field(&fields[n++], key, key_len, v);
    *root = o;
    return n;
}

void jrec_free(struct json_t *root) { json_decref(root); }

const struct jrec_field *jrec_get(const struct jrec_field *fields, int n, const char *key)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(fields[i].key, key)) return &fields[i];
    return NULL;
}
