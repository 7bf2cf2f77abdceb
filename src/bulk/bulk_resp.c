/* Pure parser of _bulk responses: one status and error per item, in request order. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "d2o/bulk.h"

/* Copies the string value of o (or its JSON text when it is not a string) into dst. */
static void copy_text(char *dst, size_t size, struct json_object *o)
{
    const char *s = json_object_get_string(o);

    snprintf(dst, size, "%s", s ? s : "");
}

static void read_error(struct d2o_bulk_item_status *st, struct json_object *err)
{
    struct json_object *v, *cause;
    size_t used;

    if (!json_object_is_type(err, json_type_object)) {
        copy_text(st->error_reason, sizeof(st->error_reason), err);
        return;
    }
    if (json_object_object_get_ex(err, "type", &v)) {
        copy_text(st->error_type, sizeof(st->error_type), v);
    }
    if (json_object_object_get_ex(err, "reason", &v)) {
        copy_text(st->error_reason, sizeof(st->error_reason), v);
    }
    if (json_object_object_get_ex(err, "caused_by", &cause) &&
        json_object_is_type(cause, json_type_object)) {
        struct json_object *ct = NULL, *cr = NULL;
        const char *ts, *rs;

        (void)json_object_object_get_ex(cause, "type", &ct);
        (void)json_object_object_get_ex(cause, "reason", &cr);
        ts = ct ? json_object_get_string(ct) : NULL;
        rs = cr ? json_object_get_string(cr) : NULL;
        used = strlen(st->error_reason);
        if (used < sizeof(st->error_reason)) {
            snprintf(st->error_reason + used, sizeof(st->error_reason) - used, "; caused by %s: %s",
                     ts ? ts : "?", rs ? rs : "");
        }
    }
}

/* One tokener per process, reset for each response: its parse stack is allocated once. */
static struct json_tokener *shared_tok;

int d2o_bulk_parse_response(const char *body, size_t len, size_t n, const char *const *ids,
                            struct d2o_bulk_item_status *out, char *errstr, size_t errstr_size)
{
    struct json_tokener *tok;
    struct json_object *root = NULL, *items, *v;
    size_t i;
    int r = -EINVAL;

    if (len > (size_t)INT32_MAX) {
        snprintf(errstr, errstr_size, "bulk response of %zu bytes is too large", len);
        return -EINVAL;
    }
    if (len == 0) {
        snprintf(errstr, errstr_size, "bulk response is empty");
        return -EINVAL;
    }
    if (!shared_tok) {
        shared_tok = json_tokener_new_ex(64);
        if (!shared_tok) {
            snprintf(errstr, errstr_size, "out of memory");
            return -ENOMEM;
        }
    }
    tok = shared_tok;
    json_tokener_reset(tok);
    root = json_tokener_parse_ex(tok, body, (int)len);
    if (!root || json_tokener_get_error(tok) != json_tokener_success) {
        snprintf(errstr, errstr_size, "bulk response is not JSON (%s, %zu bytes)",
                 root ? "trailing bytes or truncated"
                      : json_tokener_error_desc(json_tokener_get_error(tok)),
                 len);
        goto out;
    }
    for (i = json_tokener_get_parse_end(tok); i < len; i++) {
        if (body[i] != ' ' && body[i] != '\n' && body[i] != '\r' && body[i] != '\t') {
            snprintf(errstr, errstr_size, "bulk response has %zu bytes after its JSON value",
                     len - json_tokener_get_parse_end(tok));
            goto out;
        }
    }
    if (!json_object_is_type(root, json_type_object) ||
        !json_object_object_get_ex(root, "items", &items) ||
        !json_object_is_type(items, json_type_array)) {
        snprintf(errstr, errstr_size, "bulk response has no items array");
        goto out;
    }
    if (json_object_array_length(items) != n) {
        snprintf(errstr, errstr_size, "bulk response has %zu items for %zu sent",
                 json_object_array_length(items), n);
        goto out;
    }
    for (i = 0; i < n; i++) {
        struct json_object *item = json_object_array_get_idx(items, i), *op = NULL, *err;
        int64_t status;

        memset(&out[i], 0, sizeof(out[i]));
        if (!json_object_is_type(item, json_type_object) || json_object_object_length(item) != 1) {
            snprintf(errstr, errstr_size, "bulk response item %zu is not {action: result}", i);
            goto out;
        }
        {
            json_object_object_foreach(item, action, result)
            {
                (void)action;
                op = result;
            }
        }
        if (!json_object_is_type(op, json_type_object) ||
            !json_object_object_get_ex(op, "status", &v) ||
            !json_object_is_type(v, json_type_int)) {
            snprintf(errstr, errstr_size, "bulk response item %zu has no status", i);
            goto out;
        }
        status = json_object_get_int64(v);
        if (status < 100 || status > 599) {
            snprintf(errstr, errstr_size, "bulk response item %zu has status %lld", i,
                     (long long)status);
            goto out;
        }
        out[i].status = (int)status;
        if (ids && ids[i] && json_object_object_get_ex(op, "_id", &v)) {
            const char *got = json_object_get_string(v);

            if (!json_object_is_type(v, json_type_string) || !got || strcmp(got, ids[i]) != 0) {
                snprintf(errstr, errstr_size,
                         "bulk response item %zu is for _id \"%.64s\", sent \"%.64s\"", i,
                         got ? got : "", ids[i]);
                goto out;
            }
        }
        if (json_object_object_get_ex(op, "error", &err)) {
            read_error(&out[i], err);
        }
    }
    r = 0;
out:
    json_object_put(root);
    return r;
}
