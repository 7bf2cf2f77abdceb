/*
 * Pure helpers that shape _bulk request bodies: how many items one body takes, and the ordering
 * key (index, id) read from an item's action line. See include/d2o/bulk.h.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "d2o/bulk.h"

size_t d2o_bulk_batch_count(const size_t *lens, size_t n, size_t max_bytes, size_t max_items)
{
    size_t i, bytes = 0;

    if (n == 0) {
        return 0;
    }
    if (max_items == 0) {
        max_items = 1;
    }
    for (i = 0; i < n && i < max_items; i++) {
        if (i > 0 && (lens[i] > max_bytes || bytes + lens[i] > max_bytes)) {
            break;
        }
        bytes += lens[i];
    }
    return i;
}

static char *dup_string(struct json_object *o)
{
    const char *s = json_object_get_string(o);

    return strdup(s ? s : "");
}

int d2o_bulk_action_key(const char *ndjson, size_t len, char verb[8], char **index, char **id,
                        char *errstr, size_t errstr_size)
{
    const char *nl = memchr(ndjson, '\n', len);
    size_t line = nl ? (size_t)(nl - ndjson) : len;
    struct json_tokener *tok = NULL;
    struct json_object *root = NULL, *meta = NULL, *v;
    const char *name = NULL;
    int r = -EINVAL;

    *index = NULL;
    *id = NULL;
    verb[0] = '\0';
    if (line == 0 || line > 65536) {
        snprintf(errstr, errstr_size, "bulk action line of %zu bytes", line);
        goto out;
    }
    tok = json_tokener_new_ex(8);
    if (!tok) {
        r = -ENOMEM;
        goto out;
    }
    root = json_tokener_parse_ex(tok, ndjson, (int)line);
    if (!root || json_tokener_get_error(tok) != json_tokener_success ||
        !json_object_is_type(root, json_type_object) || json_object_object_length(root) != 1) {
        snprintf(errstr, errstr_size, "bulk action line is not a {verb: {...}} object");
        goto out;
    }
    {
        json_object_object_foreach(root, key, val)
        {
            name = key;
            meta = val;
        }
    }
    if (strcmp(name, "index") != 0 && strcmp(name, "create") != 0 && strcmp(name, "update") != 0 &&
        strcmp(name, "delete") != 0) {
        snprintf(errstr, errstr_size, "bulk action \"%.32s\" is not index|create|update|delete",
                 name);
        goto out;
    }
    if (!json_object_is_type(meta, json_type_object)) {
        snprintf(errstr, errstr_size, "bulk action %s has no metadata object", name);
        goto out;
    }
    snprintf(verb, 8, "%s", name);
    if (json_object_object_get_ex(meta, "_index", &v)) {
        *index = dup_string(v);
        if (!*index) {
            r = -ENOMEM;
            goto out;
        }
    }
    if (json_object_object_get_ex(meta, "_id", &v)) {
        *id = dup_string(v);
        if (!*id) {
            r = -ENOMEM;
            goto out;
        }
    }
    r = 0;
out:
    if (r < 0) {
        free(*index);
        free(*id);
        *index = NULL;
        *id = NULL;
    }
    json_object_put(root);
    if (tok) {
        json_tokener_free(tok);
    }
    return r;
}
