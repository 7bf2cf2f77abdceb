/*
 * Document identity, versions, index names and the bulk item of one change record.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "d2o/conf.h"
#include "d2o/document.h"
#include "d2o/jdoc.h"

void d2o_doc_op_free(struct d2o_doc_op *op)
{
    if (!op) {
        return;
    }
    free(op->index);
    free(op->id);
    d2o_buf_free(&op->ndjson);
    memset(op, 0, sizeof(*op));
}

bool d2o_index_name_valid(const char *name, char *why, size_t why_size)
{
    size_t i, n = strlen(name);

    if (n == 0 || n > 255) {
        snprintf(why, why_size, "index name '%.40s' must be 1 to 255 bytes", name);
        return false;
    }
    if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0 || name[0] == '-' || name[0] == '_' ||
        name[0] == '+') {
        snprintf(why, why_size, "index name '%.40s' may not be . or .. or start with -, _ or +",
                 name);
        return false;
    }
    for (i = 0; i < n; i++) {
        char c = name[i];

        if ((c >= 'A' && c <= 'Z') || strchr("\\/*?\"<>| ,#:", c)) {
            snprintf(why, why_size,
                     "index name '%.40s' may not hold upper case letters or any of "
                     "\\ / * ? \" < > | space , # :",
                     name);
            return false;
        }
    }
    return true;
}

/* Appends one key attribute's text for the id; with escape, '|' and '\' get a backslash (the
 * parts of a composite id), otherwise the text is kept exactly (a hash key alone). */
static int key_text(const char *name, size_t name_len, const struct d2o_jnode *av, bool escape,
                    struct d2o_buf *out, char *errstr, size_t errstr_size)
{
    const struct d2o_jnode *v;
    struct d2o_buf tmp = D2O_BUF_INIT;
    size_t i;
    int r = 0, nl = (int)(name_len > 200 ? 200 : name_len);
    bool is_n;

    if (!av || av->type != D2O_JOBJECT || av->len != 1) {
        snprintf(errstr, errstr_size, "dynamodb.Keys.%.*s is not an AttributeValue", nl, name);
        return -EINVAL;
    }
    v = av->first;
    is_n = v->key_len == 1 && v->key[0] == 'N';
    if (v->type != D2O_JSTRING || v->key_len != 1 ||
        (v->key[0] != 'S' && v->key[0] != 'N' && v->key[0] != 'B')) {
        snprintf(errstr, errstr_size,
                 "dynamodb.Keys.%.*s has type %.*s; key attributes are S, N or B", nl, name,
                 (int)(v->key_len > 20 ? 20 : v->key_len), v->key);
        return -EINVAL;
    }
    if (v->len == 0) {
        snprintf(errstr, errstr_size, "dynamodb.Keys.%.*s is empty", nl, name);
        return -EINVAL;
    }
    if (is_n) {
        r = d2o_number_canonical(v->text, v->len, &tmp);
        if (r == -EINVAL) {
            snprintf(errstr, errstr_size, "dynamodb.Keys.%.*s: '%.*s' is not a number", nl, name,
                     (int)(v->len > 60 ? 60 : v->len), v->text);
        }
    } else {
        r = d2o_buf_append(&tmp, v->text, v->len);
    }
    for (i = 0; r == 0 && i < tmp.len; i++) {
        if (escape && (tmp.data[i] == '|' || tmp.data[i] == '\\')) {
            r = d2o_buf_putc(out, '\\');
        }
        if (r == 0) {
            r = d2o_buf_putc(out, tmp.data[i]);
        }
    }
    d2o_buf_free(&tmp);
    return r;
}

/* Orders two member names as strcmp orders C strings without NUL bytes. */
static int name_cmp(const struct d2o_jnode *a, const struct d2o_jnode *b)
{
    size_t n = a->key_len < b->key_len ? a->key_len : b->key_len;
    int c = memcmp(a->key, b->key, n);

    return c ? c : (a->key_len > b->key_len) - (a->key_len < b->key_len);
}

int d2o_doc_id_node(const struct d2o_jnode *keys, const char *hash_key, const char *range_key,
                    struct d2o_buf *out, char *errstr, size_t errstr_size)
{
    const struct d2o_jnode *vals[2] = {NULL, NULL};
    size_t n = keys && keys->type == D2O_JOBJECT ? keys->len : 0;
    int i, r;

    if (n < 1 || n > 2) {
        snprintf(errstr, errstr_size, "dynamodb.Keys has %zu attributes; a key has one or two", n);
        return -EINVAL;
    }
    if (hash_key) {
        const char *names[2] = {hash_key, range_key};

        for (i = 0; i < 2 && names[i]; i++) {
            vals[i] = d2o_jnode_get(keys, names[i]);
            if (!vals[i]) {
                snprintf(errstr, errstr_size,
                         "dynamodb.Keys lacks %s, the %s key attribute set in key_schema", names[i],
                         i ? "range" : "hash");
                return -EINVAL;
            }
        }
        if (n != (range_key ? 2u : 1u)) {
            snprintf(errstr, errstr_size,
                     "dynamodb.Keys has %zu attributes but key_schema names %d", n,
                     range_key ? 2 : 1);
            return -EINVAL;
        }
    } else {
        vals[0] = keys->first;
        vals[1] = keys->first->next;
        if (n == 2 && name_cmp(vals[0], vals[1]) > 0) {
            vals[0] = keys->first->next;
            vals[1] = keys->first;
        }
    }
    r = key_text(vals[0]->key, vals[0]->key_len, vals[0], n == 2, out, errstr, errstr_size);
    if (r == 0 && n == 2) {
        r = d2o_buf_putc(out, '|');
        if (r == 0) {
            r = key_text(vals[1]->key, vals[1]->key_len, vals[1], true, out, errstr, errstr_size);
        }
    }
    return r;
}

int64_t d2o_doc_version(int64_t approx_creation, enum d2o_precision precision)
{
    /* Microseconds either way, so both precisions share one scale. Nothing else goes into the
     * version: no shard, no sequence number, no counter, so every reading of a change, and
     * every copy of it, gets the same one. */
    switch (precision) {
    case D2O_PRECISION_MICROSECOND:
        return approx_creation;
    case D2O_PRECISION_SECOND:
        /* the first microsecond of the second; a stream read directly adds its per-shard
         * counter on top (d2o_ddbstreams_version) */
        return approx_creation * 1000000;
    case D2O_PRECISION_MILLISECOND:
        break;
    }
    return approx_creation * 1000;
}

/* The key attributes as plain JSON members (for tombstones). */
static int key_members(const struct d2o_jnode *keys, struct d2o_buf *out, char *errstr, size_t n)
{
    struct d2o_buf obj = D2O_BUF_INIT;
    int r = d2o_image_node_to_json(keys, "dynamodb.Keys", &obj, errstr, n);

    /* obj is "{...}": append its members without the braces. */
    if (r == 0 && obj.len > 2) {
        r = d2o_buf_putc(out, ',');
        if (r == 0) {
            r = d2o_buf_append(out, obj.data + 1, obj.len - 2);
        }
    }
    d2o_buf_free(&obj);
    return r;
}

static int action_line(struct d2o_doc_op *op, const char *verb)
{
    /* One item per record: appended piece by piece, without printf's format parsing. */
    int r = d2o_buf_puts(&op->ndjson, "{\"");

    r |= d2o_buf_puts(&op->ndjson, verb);
    r |= d2o_buf_puts(&op->ndjson, "\":{\"_index\":");
    r |= d2o_buf_json_str(&op->ndjson, op->index, strlen(op->index));
    r |= d2o_buf_puts(&op->ndjson, ",\"_id\":");
    r |= d2o_buf_json_str(&op->ndjson, op->id, strlen(op->id));
    r |= d2o_buf_puts(&op->ndjson, ",\"version\":");
    r |= d2o_buf_put_i64(&op->ndjson, op->version);
    r |= d2o_buf_puts(&op->ndjson, ",\"version_type\":\"external\"}}\n");
    return r ? -ENOMEM : 0;
}

/* Builds the item; version < 0 derives it from the record. */
static int build(const struct d2o_record *rec, const struct d2o_config *conf, int64_t version,
                 struct d2o_doc_op *out, char *errstr, size_t errstr_size)
{
    struct d2o_buf id = D2O_BUF_INIT;
    const char *schema = d2o_kvlist_get(&conf->key_schema, rec->table);
    char hash[256] = "", why[200];
    const char *range = NULL;
    int r;

    memset(out, 0, sizeof(*out));
    if (schema) {
        const char *colon = strchr(schema, ':');

        snprintf(hash, sizeof(hash), "%.*s",
                 (int)(colon ? (size_t)(colon - schema) : strlen(schema)), schema);
        range = colon && colon[1] ? colon + 1 : NULL;
    }
    r = d2o_doc_id_node(rec->keys, schema ? hash : NULL, range, &id, errstr, errstr_size);
    if (r < 0) {
        goto out;
    }
    out->id = d2o_buf_steal(&id);
    if (!out->id) {
        r = -ENOMEM;
        goto out;
    }
    if (strlen(out->id) > 512) {
        snprintf(errstr, errstr_size, "document id of %zu bytes is longer than OpenSearch's 512",
                 strlen(out->id));
        r = -EINVAL;
        goto out;
    }
    out->index = d2o_conf_index_for_table(conf, rec->table);
    if (!out->index) {
        r = -ENOMEM;
        goto out;
    }
    if (!d2o_index_name_valid(out->index, why, sizeof(why))) {
        snprintf(errstr, errstr_size, "table %.100s: %s (set index_map)", rec->table, why);
        r = -EINVAL;
        goto out;
    }
    out->version = version >= 0 ? version : d2o_doc_version(rec->approx_creation, rec->precision);
    if (rec->event == D2O_EVENT_REMOVE && rec->ttl_delete && conf->ttl_deletes == D2O_TTL_KEEP) {
        out->action = D2O_DOC_SKIP;
        r = d2o_buf_puts(&out->ndjson, "");
    } else if (rec->event == D2O_EVENT_REMOVE && conf->delete_mode == D2O_DELETE_DELETE) {
        out->action = D2O_DOC_DELETE;
        r = action_line(out, "delete");
    } else if (rec->event == D2O_EVENT_REMOVE) {
        out->action = D2O_DOC_INDEX;
        out->tombstone = true;
        r = action_line(out, "index");
        r = r < 0 ? r : d2o_buf_puts(&out->ndjson, "{\"_deleted\":true");
        r = r < 0 ? r : key_members(rec->keys, &out->ndjson, errstr, errstr_size);
        r = r < 0 ? r : d2o_buf_puts(&out->ndjson, "}\n");
    } else {
        out->action = D2O_DOC_INDEX;
        r = action_line(out, "index");
        r = r < 0 ? r
                  : d2o_image_node_to_json(rec->new_image, "dynamodb.NewImage", &out->ndjson,
                                           errstr, errstr_size);
        r = r < 0 ? r : d2o_buf_putc(&out->ndjson, '\n');
    }
out:
    d2o_buf_free(&id);
    if (r < 0) {
        if (r == -ENOMEM) {
            snprintf(errstr, errstr_size, "out of memory");
        }
        d2o_doc_op_free(out);
        return r;
    }
    return 0;
}

int d2o_doc_build(const struct d2o_record *rec, const struct d2o_config *conf,
                  struct d2o_doc_op *out, char *errstr, size_t errstr_size)
{
    return build(rec, conf, -1, out, errstr, errstr_size);
}

int d2o_doc_build_at(const struct d2o_record *rec, const struct d2o_config *conf, int64_t version,
                     struct d2o_doc_op *out, char *errstr, size_t errstr_size)
{
    if (version < 0) {
        snprintf(errstr, errstr_size, "version %lld is negative", (long long)version);
        return -EINVAL;
    }
    return build(rec, conf, version, out, errstr, errstr_size);
}
