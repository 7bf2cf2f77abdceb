#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "d2o/record.h"

/* Envelope (3 levels) plus DynamoDB's 32 nesting levels at two JSON levels each, plus slack. */
#define RECORD_MAX_DEPTH 80

static struct json_tokener *shared_tok;

static const char *const event_names[] = {"INSERT", "MODIFY", "REMOVE"};

const char *d2o_event_name(enum d2o_event e)
{
    return (unsigned)e < 3 ? event_names[e] : "?";
}

void d2o_record_free(struct d2o_record *r)
{
    if (!r) {
        return;
    }
    json_object_put(r->root);
    memset(r, 0, sizeof(*r));
}

static struct json_object *member(struct json_object *o, const char *key)
{
    struct json_object *v = NULL;

    if (!o || !json_object_object_get_ex(o, key, &v)) {
        return NULL;
    }
    return v;
}

static int refuse(struct d2o_record *r, char *errstr, size_t n, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int refuse(struct d2o_record *r, char *errstr, size_t n, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(errstr, n, fmt, ap);
    va_end(ap);
    d2o_record_free(r);
    return -EINVAL;
}

int d2o_record_parse(const char *data, size_t len, struct d2o_record *out, char *errstr,
                     size_t errstr_size)
{
    struct json_tokener *tok;
    struct json_object *root, *v, *ddb, *who;
    enum json_tokener_error jerr;
    const char *name;

    memset(out, 0, sizeof(*out));
    out->size_bytes = -1;
    if (len > (size_t)INT32_MAX) {
        snprintf(errstr, errstr_size, "record of %zu bytes is too large", len);
        return -EINVAL;
    }
    /* One tokener per process, reset for each record: its parse stack is allocated once. */
    if (!shared_tok) {
        shared_tok = json_tokener_new_ex(RECORD_MAX_DEPTH);
        if (!shared_tok) {
            return -ENOMEM;
        }
        json_tokener_set_flags(shared_tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    }
    tok = shared_tok;
    json_tokener_reset(tok);
    root = json_tokener_parse_ex(tok, data, (int)len);
    jerr = json_tokener_get_error(tok);
    if (root && jerr == json_tokener_success && (size_t)json_tokener_get_parse_end(tok) < len) {
        size_t i;

        for (i = json_tokener_get_parse_end(tok); i < len; i++) {
            if (data[i] != ' ' && data[i] != '\n' && data[i] != '\r' && data[i] != '\t') {
                json_object_put(root);
                snprintf(errstr, errstr_size,
                         "record is not one JSON object: extra bytes at "
                         "offset %zu",
                         i);
                return -EINVAL;
            }
        }
    }
    if (!root || jerr != json_tokener_success) {
        /* json-c's own words ("boolean expected") describe its state, not the input: say
         * where it stopped and show the bytes it saw there. */
        size_t at = (size_t)json_tokener_get_parse_end(tok), from = at > 16 ? at - 16 : 0, i;
        char seen[48];
        size_t k = 0;

        for (i = from; i < len && i < at + 16 && k < sizeof(seen) - 1; i++) {
            unsigned char ch = (unsigned char)data[i];

            seen[k++] = ch >= 0x20 && ch < 0x7f ? (char)ch : '.';
        }
        seen[k] = '\0';
        if (jerr == json_tokener_continue || at >= len) {
            snprintf(errstr, errstr_size,
                     "record is not valid JSON: it ends after %zu bytes, inside a value (last "
                     "bytes: '%s')",
                     len, seen);
        } else {
            snprintf(errstr, errstr_size,
                     "record is not valid JSON: unexpected '%c' at byte %zu (bytes %zu-%zu: "
                     "'%s'; the parser says: %s)",
                     data[at] >= 0x20 && data[at] < 0x7f ? data[at] : '.', at, from,
                     from + k - 1 + (k == 0), seen, json_tokener_error_desc(jerr));
        }
        json_object_put(root);
        return -EINVAL;
    }
    out->root = root;
    if (!json_object_is_type(root, json_type_object)) {
        return refuse(out, errstr, errstr_size, "record is not a JSON object");
    }

    v = member(root, "eventName");
    if (!v || !json_object_is_type(v, json_type_string)) {
        return refuse(out, errstr, errstr_size, "eventName is %s", v ? "not a string" : "missing");
    }
    name = json_object_get_string(v);
    if (strcmp(name, "INSERT") == 0) {
        out->event = D2O_EVENT_INSERT;
    } else if (strcmp(name, "MODIFY") == 0) {
        out->event = D2O_EVENT_MODIFY;
    } else if (strcmp(name, "REMOVE") == 0) {
        out->event = D2O_EVENT_REMOVE;
    } else {
        return refuse(out, errstr, errstr_size, "eventName '%.40s' is not INSERT, MODIFY or REMOVE",
                      name);
    }

    v = member(root, "tableName");
    if (!v || !json_object_is_type(v, json_type_string) || json_object_get_string_len(v) == 0) {
        return refuse(out, errstr, errstr_size, "tableName is %s",
                      !v                                         ? "missing"
                      : json_object_is_type(v, json_type_string) ? "empty"
                                                                 : "not a string");
    }
    out->table = json_object_get_string(v);
    v = member(root, "eventID");
    out->event_id =
        v && json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;

    ddb = member(root, "dynamodb");
    if (!ddb || !json_object_is_type(ddb, json_type_object)) {
        return refuse(out, errstr, errstr_size, "dynamodb is %s",
                      ddb ? "not an object" : "missing");
    }
    out->keys = member(ddb, "Keys");
    if (!out->keys || !json_object_is_type(out->keys, json_type_object) ||
        json_object_object_length(out->keys) == 0) {
        return refuse(out, errstr, errstr_size, "dynamodb.Keys is %s",
                      !out->keys                                         ? "missing"
                      : json_object_is_type(out->keys, json_type_object) ? "empty"
                                                                         : "not an object");
    }
    if (json_object_object_length(out->keys) > 2) {
        return refuse(out, errstr, errstr_size,
                      "dynamodb.Keys has %d attributes; a DynamoDB key has one or two",
                      json_object_object_length(out->keys));
    }
    out->new_image = member(ddb, "NewImage");
    out->old_image = member(ddb, "OldImage");
    if (out->new_image && !json_object_is_type(out->new_image, json_type_object)) {
        return refuse(out, errstr, errstr_size, "dynamodb.NewImage is not an object");
    }
    if (out->old_image && !json_object_is_type(out->old_image, json_type_object)) {
        return refuse(out, errstr, errstr_size, "dynamodb.OldImage is not an object");
    }
    if (out->event != D2O_EVENT_REMOVE && !out->new_image) {
        return refuse(out, errstr, errstr_size, "dynamodb.NewImage is missing (eventName %s)",
                      name);
    }

    v = member(ddb, "ApproximateCreationDateTime");
    if (!v || !json_object_is_type(v, json_type_int)) {
        return refuse(out, errstr, errstr_size, "dynamodb.ApproximateCreationDateTime is %s",
                      v ? "not an integer (epoch milliseconds or microseconds)" : "missing");
    }
    errno = 0;
    out->approx_creation = json_object_get_int64(v);
    if (out->approx_creation <= 0 || errno == ERANGE) {
        return refuse(out, errstr, errstr_size,
                      "dynamodb.ApproximateCreationDateTime %lld is out of range",
                      (long long)out->approx_creation);
    }
    v = member(ddb, "ApproximateCreationDateTimePrecision");
    if (v) {
        const char *p = json_object_get_string(v);

        if (!json_object_is_type(v, json_type_string)) {
            return refuse(out, errstr, errstr_size,
                          "dynamodb.ApproximateCreationDateTimePrecision is not a string");
        }
        if (strcmp(p, "MILLISECOND") == 0) {
            out->precision = D2O_PRECISION_MILLISECOND;
        } else if (strcmp(p, "MICROSECOND") == 0) {
            out->precision = D2O_PRECISION_MICROSECOND;
        } else if (strcmp(p, "SECOND") == 0) {
            out->precision = D2O_PRECISION_SECOND;
        } else {
            return refuse(out, errstr, errstr_size,
                          "dynamodb.ApproximateCreationDateTimePrecision '%.20s' is not "
                          "MILLISECOND, MICROSECOND or SECOND",
                          p);
        }
    } else {
        /* Older records carry no precision: a value of 1e15 or more can only be microseconds. */
        out->precision = out->approx_creation >= 1000000000000000LL ? D2O_PRECISION_MICROSECOND
                                                                    : D2O_PRECISION_MILLISECOND;
    }
    if (out->precision == D2O_PRECISION_SECOND && out->approx_creation > INT64_MAX / 1000000 - 1) {
        return refuse(out, errstr, errstr_size,
                      "dynamodb.ApproximateCreationDateTime %lld is too large for seconds",
                      (long long)out->approx_creation);
    }
    if (out->precision == D2O_PRECISION_MILLISECOND &&
        out->approx_creation > INT64_MAX / 1000 - 1000) {
        return refuse(out, errstr, errstr_size,
                      "dynamodb.ApproximateCreationDateTime %lld is too large for milliseconds",
                      (long long)out->approx_creation);
    }
    v = member(ddb, "SizeBytes");
    if (v && json_object_is_type(v, json_type_int)) {
        out->size_bytes = json_object_get_int64(v);
    }
    who = member(root, "userIdentity");
    if (who && json_object_is_type(who, json_type_object)) {
        struct json_object *type = member(who, "type"), *principal = member(who, "principalId");

        out->ttl_delete = out->event == D2O_EVENT_REMOVE && type && principal &&
                          strcmp(json_object_get_string(type), "Service") == 0 &&
                          strcmp(json_object_get_string(principal), "dynamodb.amazonaws.com") == 0;
    }
    return 0;
}
