/* Pure parser of _bulk responses: one status and error per item, in request order. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "d2o/bulk.h"

int d2o_bulk_parse_response(const char *body, size_t len, size_t n,
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
    tok = json_tokener_new_ex(64);
    if (!tok) {
        return -ENOMEM;
    }
    root = json_tokener_parse_ex(tok, body, (int)len);
    if (!root || json_tokener_get_error(tok) != json_tokener_success) {
        snprintf(errstr, errstr_size, "bulk response is not JSON (%s)",
                 json_tokener_error_desc(json_tokener_get_error(tok)));
        goto out;
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
        out[i].status = json_object_get_int(v);
        if (json_object_object_get_ex(op, "error", &err)) {
            if (json_object_is_type(err, json_type_object)) {
                if (json_object_object_get_ex(err, "type", &v)) {
                    snprintf(out[i].error_type, sizeof(out[i].error_type), "%s",
                             json_object_get_string(v));
                }
                if (json_object_object_get_ex(err, "reason", &v)) {
                    snprintf(out[i].error_reason, sizeof(out[i].error_reason), "%s",
                             json_object_get_string(v));
                }
            } else {
                snprintf(out[i].error_reason, sizeof(out[i].error_reason), "%s",
                         json_object_get_string(err));
            }
        }
    }
    r = 0;
out:
    json_object_put(root);
    json_tokener_free(tok);
    return r;
}
