/*
 * Pure parts of the DynamoDB client: request bodies and the parsers of its answers. No I/O, so
 * the fuzz target (tests/fuzz/fuzz_dynamodb.c) drives them directly.
 */
#include <errno.h>
#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "d2o/dynamodb.h"
#include "d2o/kinesis.h"

#define MALFORMED "MalformedResponse"

__attribute__((format(printf, 2, 3))) static void malformed(struct d2o_ddb_err *err,
                                                            const char *fmt, ...)
{
    va_list ap;

    memset(err, 0, sizeof(*err));
    err->action = D2O_ACT_RETRY;
    snprintf(err->code, sizeof(err->code), MALFORMED);
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
}

int d2o_ddb_parse_json(const char *op, const char *body, size_t len, struct json_object **root,
                       struct d2o_ddb_err *err)
{
    json_tokener *tok;
    json_object *o = NULL;
    enum json_tokener_error je = json_tokener_success;

    *root = NULL;
    if (!body || len == 0 || len > INT32_MAX || memchr(body, '\0', len)) {
        malformed(err, "%s answer: %s", op, len == 0 ? "empty body" : "not JSON text");
        return D2O_DDB_E_FAILED;
    }
    /* as deep as a change record may be (src/record): a Scan page's item sits at the level of
     * a record's NewImage, and DynamoDB allows 32 nested levels of two JSON levels each */
    tok = json_tokener_new_ex(80);
    if (!tok) {
        return -ENOMEM;
    }
    o = json_tokener_parse_ex(tok, body, (int)len);
    je = json_tokener_get_error(tok);
    if (o && je == json_tokener_success && json_tokener_get_parse_end(tok) < len) {
        /* trailing bytes after the object: only white space may follow */
        size_t i;

        for (i = json_tokener_get_parse_end(tok); i < len; i++) {
            if (body[i] != ' ' && body[i] != '\n' && body[i] != '\r' && body[i] != '\t') {
                je = json_tokener_error_parse_unexpected;
                break;
            }
        }
    }
    json_tokener_free(tok);
    if (!o || je != json_tokener_success || !json_object_is_type(o, json_type_object)) {
        json_object_put(o);
        malformed(err, "%s answer is not a JSON object (%s)", op,
                  je != json_tokener_success ? json_tokener_error_desc(je) : "other JSON type");
        return D2O_DDB_E_FAILED;
    }
    *root = o;
    return 0;
}

void d2o_ddb_parse_error(long status, const char *error_type_header, const char *body, size_t len,
                         struct d2o_ddb_err *err)
{
    struct d2o_kinesis_err ke;

    /* DynamoDB and Kinesis share AWS's JSON error shape ({"__type": ..., "message": ...}). */
    d2o_kinesis_parse_error(status, error_type_header, body, len, &ke);
    memset(err, 0, sizeof(*err));
    err->action = ke.action;
    err->status = ke.status;
    err->curl_code = ke.curl_code;
    snprintf(err->code, sizeof(err->code), "%s", ke.code);
    snprintf(err->message, sizeof(err->message), "%s", ke.message);
}

/* ---- field readers ---- */

static int get_obj(const char *what, json_object *o, const char *key, json_type type, bool required,
                   json_object **out, struct d2o_ddb_err *err)
{
    json_object *v = NULL;

    *out = NULL;
    if (!json_object_object_get_ex(o, key, &v) || json_object_is_type(v, json_type_null)) {
        if (required) {
            malformed(err, "%s: %s is missing", what, key);
            return D2O_DDB_E_FAILED;
        }
        return 0;
    }
    if (!json_object_is_type(v, type)) {
        malformed(err, "%s: %s is not a%s %s", what, key, type == json_type_object ? "n" : "",
                  json_type_to_name(type));
        return D2O_DDB_E_FAILED;
    }
    *out = v;
    return 0;
}

static int get_str(const char *what, json_object *o, const char *key, bool required, char **out,
                   struct d2o_ddb_err *err)
{
    json_object *v;
    int r = get_obj(what, o, key, json_type_string, required, &v, err);

    *out = NULL;
    if (r != 0 || !v) {
        return r;
    }
    *out = strdup(json_object_get_string(v));
    return *out ? 0 : -ENOMEM;
}

static int get_int(const char *what, json_object *o, const char *key, int64_t *out,
                   struct d2o_ddb_err *err)
{
    json_object *v = NULL;

    if (!json_object_object_get_ex(o, key, &v) || json_object_is_type(v, json_type_null)) {
        return 0;
    }
    if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 0) {
        malformed(err, "%s: %s is not a non-negative integer", what, key);
        return D2O_DDB_E_FAILED;
    }
    *out = json_object_get_int64(v);
    return 0;
}

/* ---- DescribeTable ---- */

void d2o_ddb_table_free(struct d2o_ddb_table *t)
{
    if (!t) {
        return;
    }
    free(t->name);
    free(t->status);
    free(t->hash_key);
    free(t->range_key);
    free(t->billing_mode);
    free(t->stream_view_type);
    free(t->latest_stream_arn);
    memset(t, 0, sizeof(*t));
}

static int read_key_schema(json_object *table, struct d2o_ddb_table *res, struct d2o_ddb_err *err)
{
    static const char what[] = "DescribeTable answer: Table.KeySchema";
    json_object *ks = NULL, *e, *v;
    size_t i, n;
    int r;

    r = get_obj("DescribeTable answer: Table", table, "KeySchema", json_type_array, true, &ks, err);
    if (r != 0) {
        return r;
    }
    n = json_object_array_length(ks);
    if (n < 1 || n > 2) {
        malformed(err, "%s has %zu elements (1 or 2 expected)", what, n);
        return D2O_DDB_E_FAILED;
    }
    for (i = 0; i < n; i++) {
        const char *name, *type;
        char **slot;

        e = json_object_array_get_idx(ks, i);
        if (!json_object_is_type(e, json_type_object) ||
            !json_object_object_get_ex(e, "AttributeName", &v) ||
            !json_object_is_type(v, json_type_string)) {
            malformed(err, "%s[%zu].AttributeName is missing", what, i);
            return D2O_DDB_E_FAILED;
        }
        name = json_object_get_string(v);
        if (!json_object_object_get_ex(e, "KeyType", &v) ||
            !json_object_is_type(v, json_type_string)) {
            malformed(err, "%s[%zu].KeyType is missing", what, i);
            return D2O_DDB_E_FAILED;
        }
        type = json_object_get_string(v);
        if (strcmp(type, "HASH") == 0) {
            slot = &res->hash_key;
        } else if (strcmp(type, "RANGE") == 0) {
            slot = &res->range_key;
        } else {
            malformed(err, "%s[%zu].KeyType '%.40s' is neither HASH nor RANGE", what, i, type);
            return D2O_DDB_E_FAILED;
        }
        if (*slot || !name[0]) {
            malformed(err, "%s[%zu]: %s", what, i,
                      name[0] ? "a second key of the same type" : "empty AttributeName");
            return D2O_DDB_E_FAILED;
        }
        *slot = strdup(name);
        if (!*slot) {
            return -ENOMEM;
        }
    }
    if (!res->hash_key) {
        malformed(err, "%s has no HASH key", what);
        return D2O_DDB_E_FAILED;
    }
    return 0;
}

static void read_attribute_types(json_object *table, struct d2o_ddb_table *res)
{
    json_object *defs = NULL, *e, *n, *t;
    size_t i;

    if (!json_object_object_get_ex(table, "AttributeDefinitions", &defs) ||
        !json_object_is_type(defs, json_type_array)) {
        return;
    }
    for (i = 0; i < json_object_array_length(defs); i++) {
        const char *name, *type;

        e = json_object_array_get_idx(defs, i);
        if (!json_object_object_get_ex(e, "AttributeName", &n) ||
            !json_object_object_get_ex(e, "AttributeType", &t) ||
            !json_object_is_type(n, json_type_string) ||
            !json_object_is_type(t, json_type_string)) {
            continue;
        }
        name = json_object_get_string(n);
        type = json_object_get_string(t);
        if (strlen(type) != 1 || !strchr("SNB", type[0])) {
            continue;
        }
        if (strcmp(name, res->hash_key) == 0) {
            res->hash_type = type[0];
        } else if (res->range_key && strcmp(name, res->range_key) == 0) {
            res->range_type = type[0];
        }
    }
}

int d2o_ddb_parse_describe_table(const char *body, size_t len, struct d2o_ddb_table *out,
                                 struct d2o_ddb_err *err)
{
    static const char what[] = "DescribeTable answer: Table";
    struct d2o_ddb_table res;
    json_object *root = NULL, *table = NULL, *sub = NULL, *v;
    int r;

    memset(&res, 0, sizeof(res));
    memset(out, 0, sizeof(*out));
    r = d2o_ddb_parse_json("DescribeTable", body, len, &root, err);
    if (r == 0) {
        r = get_obj("DescribeTable answer", root, "Table", json_type_object, true, &table, err);
    }
    if (r == 0) {
        r = get_str(what, table, "TableName", true, &res.name, err);
    }
    if (r == 0) {
        r = get_str(what, table, "TableStatus", false, &res.status, err);
    }
    if (r == 0) {
        r = read_key_schema(table, &res, err);
    }
    if (r == 0) {
        read_attribute_types(table, &res);
        r = get_int(what, table, "ItemCount", &res.item_count, err);
    }
    if (r == 0) {
        r = get_int(what, table, "TableSizeBytes", &res.size_bytes, err);
    }
    if (r == 0) {
        r = get_obj(what, table, "ProvisionedThroughput", json_type_object, false, &sub, err);
    }
    if (r == 0 && sub) {
        r = get_int("DescribeTable answer: Table.ProvisionedThroughput", sub, "ReadCapacityUnits",
                    &res.read_capacity, err);
    }
    if (r == 0) {
        r = get_obj(what, table, "BillingModeSummary", json_type_object, false, &sub, err);
    }
    if (r == 0 && sub) {
        r = get_str("DescribeTable answer: Table.BillingModeSummary", sub, "BillingMode", false,
                    &res.billing_mode, err);
    }
    if (r == 0) {
        r = get_obj(what, table, "StreamSpecification", json_type_object, false, &sub, err);
    }
    if (r == 0 && sub) {
        if (json_object_object_get_ex(sub, "StreamEnabled", &v) &&
            json_object_is_type(v, json_type_boolean)) {
            res.stream_enabled = json_object_get_boolean(v);
        }
        r = get_str("DescribeTable answer: Table.StreamSpecification", sub, "StreamViewType", false,
                    &res.stream_view_type, err);
    }
    if (r == 0) {
        r = get_str(what, table, "LatestStreamArn", false, &res.latest_stream_arn, err);
    }
    if (r == 0 && res.billing_mode && strcmp(res.billing_mode, "PAY_PER_REQUEST") == 0) {
        res.read_capacity = 0;
    }
    if (r == 0) {
        *out = res;
        memset(&res, 0, sizeof(res));
    }
    d2o_ddb_table_free(&res);
    json_object_put(root);
    return r;
}

/* ---- DescribeTimeToLive ---- */

void d2o_ddb_ttl_free(struct d2o_ddb_ttl *t)
{
    if (!t) {
        return;
    }
    free(t->status);
    free(t->attribute);
    memset(t, 0, sizeof(*t));
}

int d2o_ddb_parse_ttl(const char *body, size_t len, struct d2o_ddb_ttl *out,
                      struct d2o_ddb_err *err)
{
    static const char what[] = "DescribeTimeToLive answer: TimeToLiveDescription";
    struct d2o_ddb_ttl res;
    json_object *root = NULL, *d = NULL;
    int r;

    memset(&res, 0, sizeof(res));
    memset(out, 0, sizeof(*out));
    r = d2o_ddb_parse_json("DescribeTimeToLive", body, len, &root, err);
    if (r == 0) {
        r = get_obj("DescribeTimeToLive answer", root, "TimeToLiveDescription", json_type_object,
                    true, &d, err);
    }
    if (r == 0) {
        r = get_str(what, d, "TimeToLiveStatus", true, &res.status, err);
    }
    if (r == 0) {
        r = get_str(what, d, "AttributeName", false, &res.attribute, err);
    }
    if (r == 0 && strcmp(res.status, "ENABLED") != 0 && strcmp(res.status, "DISABLING") != 0) {
        free(res.attribute);
        res.attribute = NULL;
    }
    if (r == 0) {
        *out = res;
        memset(&res, 0, sizeof(res));
    }
    d2o_ddb_ttl_free(&res);
    json_object_put(root);
    return r;
}

/* ---- Scan ---- */

void d2o_ddb_scan_page_free(struct d2o_ddb_scan_page *p)
{
    if (!p) {
        return;
    }
    json_object_put(p->root);
    free(p->last_key);
    memset(p, 0, sizeof(*p));
}

int d2o_ddb_parse_scan(const char *body, size_t len, struct d2o_ddb_scan_page *out,
                       struct d2o_ddb_err *err)
{
    static const char what[] = "Scan answer";
    struct d2o_ddb_scan_page res;
    json_object *items = NULL, *lek = NULL, *cc = NULL, *v;
    size_t i;
    int r;

    memset(&res, 0, sizeof(res));
    memset(out, 0, sizeof(*out));
    r = d2o_ddb_parse_json("Scan", body, len, &res.root, err);
    if (r == 0) {
        r = get_obj(what, res.root, "Items", json_type_array, true, &items, err);
    }
    if (r == 0) {
        res.items = items;
        res.n_items = json_object_array_length(items);
        for (i = 0; i < res.n_items; i++) {
            if (!json_object_is_type(json_object_array_get_idx(items, i), json_type_object)) {
                malformed(err, "%s: Items[%zu] is not an object", what, i);
                r = D2O_DDB_E_FAILED;
                break;
            }
        }
    }
    if (r == 0) {
        r = get_int(what, res.root, "ScannedCount", &res.scanned_count, err);
    }
    if (r == 0) {
        r = get_obj(what, res.root, "LastEvaluatedKey", json_type_object, false, &lek, err);
    }
    if (r == 0 && lek) {
        if (json_object_object_length(lek) == 0) {
            malformed(err, "%s: LastEvaluatedKey is empty", what);
            r = D2O_DDB_E_FAILED;
        } else {
            res.last_key = strdup(json_object_to_json_string_ext(
                lek, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
            r = res.last_key ? 0 : -ENOMEM;
        }
    }
    if (r == 0) {
        r = get_obj(what, res.root, "ConsumedCapacity", json_type_object, false, &cc, err);
    }
    if (r == 0 && cc && json_object_object_get_ex(cc, "CapacityUnits", &v) &&
        (json_object_is_type(v, json_type_double) || json_object_is_type(v, json_type_int))) {
        res.consumed_rcu = json_object_get_double(v);
        if (!(res.consumed_rcu >= 0 && res.consumed_rcu < 1e12)) {
            malformed(err, "%s: ConsumedCapacity.CapacityUnits is out of range", what);
            r = D2O_DDB_E_FAILED;
        }
    }
    if (r == 0) {
        *out = res;
        memset(&res, 0, sizeof(res));
    }
    d2o_ddb_scan_page_free(&res);
    return r;
}

int d2o_ddb_format_scan(struct d2o_buf *b, const struct d2o_ddb_scan_req *q)
{
    json_object *key = NULL;
    int r;

    if (!q->table || !q->table[0] || q->total_segments < 0 ||
        q->total_segments > D2O_DDB_MAX_SEGMENTS ||
        (q->total_segments > 0 && (q->segment < 0 || q->segment >= q->total_segments)) ||
        q->limit < 0) {
        return -EINVAL;
    }
    if (q->exclusive_start_key) {
        key = json_tokener_parse(q->exclusive_start_key);
        if (!key || !json_object_is_type(key, json_type_object)) {
            json_object_put(key);
            return -EINVAL;
        }
        json_object_put(key);
    }
    r = d2o_buf_puts(b, "{\"TableName\":");
    if (r == 0) {
        r = d2o_buf_json_str(b, q->table, strlen(q->table));
    }
    if (r == 0 && q->total_segments > 0) {
        r = d2o_buf_printf(b, ",\"Segment\":%d,\"TotalSegments\":%d", q->segment,
                           q->total_segments);
    }
    if (r == 0 && q->limit > 0) {
        r = d2o_buf_printf(b, ",\"Limit\":%d", q->limit);
    }
    if (r == 0 && q->consistent_read) {
        r = d2o_buf_puts(b, ",\"ConsistentRead\":true");
    }
    if (r == 0 && q->exclusive_start_key) {
        r = d2o_buf_printf(b, ",\"ExclusiveStartKey\":%s", q->exclusive_start_key);
    }
    if (r == 0) {
        r = d2o_buf_puts(b, ",\"ReturnConsumedCapacity\":\"TOTAL\"}");
    }
    return r;
}

static int put_key_attr(struct d2o_buf *out, json_object *item, const char *name, bool first,
                        char *errstr, size_t errstr_size)
{
    json_object *v = NULL;
    const char *text;
    int r;

    if (!json_object_object_get_ex(item, name, &v) || !json_object_is_type(v, json_type_object) ||
        json_object_object_length(v) != 1) {
        snprintf(errstr, errstr_size, "the item has no key attribute '%s'", name);
        return -EINVAL;
    }
    text =
        json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    r = d2o_buf_puts(out, first ? "{" : ",");
    if (r == 0) {
        r = d2o_buf_json_str(out, name, strlen(name));
    }
    if (r == 0) {
        r = d2o_buf_putc(out, ':');
    }
    if (r == 0) {
        r = d2o_buf_puts(out, text);
    }
    return r;
}

int d2o_ddb_item_key(struct json_object *item, const char *hash_key, const char *range_key,
                     struct d2o_buf *out, char *errstr, size_t errstr_size)
{
    size_t mark = out->len;
    int r;

    if (!item || !json_object_is_type(item, json_type_object) || !hash_key) {
        snprintf(errstr, errstr_size, "the item is not an attribute map");
        return -EINVAL;
    }
    r = put_key_attr(out, item, hash_key, true, errstr, errstr_size);
    if (r == 0 && range_key) {
        r = put_key_attr(out, item, range_key, false, errstr, errstr_size);
    }
    if (r == 0) {
        r = d2o_buf_putc(out, '}');
    }
    if (r != 0) {
        d2o_buf_truncate(out, mark);
    }
    return r;
}
