#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "d2o/jdoc.h"
#include "d2o/record.h"

/* Envelope (3 levels) plus DynamoDB's 32 nesting levels at two JSON levels each, plus slack. */
#define RECORD_MAX_DEPTH 80

/* A freed record's document waits here for the next record: its arenas have grown to the size
 * of the records seen, so parsing the next one allocates nothing. */
static struct d2o_jdoc *spare_doc;

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
    if (r->root && !spare_doc) {
        spare_doc = r->root;
    } else {
        d2o_jdoc_free(r->root);
    }
    memset(r, 0, sizeof(*r));
}

/* A member that is present and not null (a null member reads as absent, as it always has). */
static const struct d2o_jnode *member(const struct d2o_jnode *o, const char *key)
{
    const struct d2o_jnode *v = d2o_jnode_get(o, key);

    return v && v->type != D2O_JNULL ? v : NULL;
}

static bool is(const struct d2o_jnode *v, enum d2o_jtype t)
{
    return v && v->type == t;
}

/* A string member read as a C string (up to a NUL byte it may hold) equals s. */
static bool cstr_is(struct d2o_jdoc *doc, const struct d2o_jnode *v, const char *s)
{
    const char *c = is(v, D2O_JSTRING) ? d2o_jdoc_cstr(doc, v) : NULL;

    return c && strcmp(c, s) == 0;
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

/*
 * Says why data is not JSON. Records that are not JSON are rare (they go to the dead-letter
 * queue), so this runs json-c's tokener over them to keep the words operators already know:
 * where it stopped and the bytes it saw there. Returns false if json-c accepts the text (the
 * few inputs it takes that JSON and yajl refuse, see jdoc.h): the caller uses yajl's words.
 */
static bool describe_syntax_error(const char *data, size_t len, char *errstr, size_t errstr_size)
{
    struct json_tokener *tok = json_tokener_new_ex(RECORD_MAX_DEPTH);
    struct json_object *root;
    enum json_tokener_error jerr;
    size_t at, from, i, k = 0;
    char seen[48];

    if (!tok) {
        return false;
    }
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    root = json_tokener_parse_ex(tok, data, (int)len);
    jerr = json_tokener_get_error(tok);
    at = (size_t)json_tokener_get_parse_end(tok);
    json_object_put(root);
    json_tokener_free(tok);
    if (root && jerr == json_tokener_success) {
        for (i = at; i < len; i++) {
            if (data[i] != ' ' && data[i] != '\n' && data[i] != '\r' && data[i] != '\t') {
                snprintf(errstr, errstr_size,
                         "record is not one JSON object: extra bytes at offset %zu", i);
                return true;
            }
        }
        return false;
    }
    /* json-c's own words ("boolean expected") describe its state, not the input: say where it
     * stopped and show the bytes it saw there. */
    from = at > 16 ? at - 16 : 0;
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
    return true;
}

/* Parses data into a document (the spare one if there is one). 0, -EINVAL or -ENOMEM. */
static int parse_doc(const char *data, size_t len, struct d2o_jdoc **out, char *errstr,
                     size_t errstr_size)
{
    struct d2o_jdoc *doc = spare_doc;
    char why[200];
    int r;

    spare_doc = NULL;
    if (!doc) {
        doc = d2o_jdoc_new(RECORD_MAX_DEPTH);
        if (!doc) {
            snprintf(errstr, errstr_size, "out of memory");
            return -ENOMEM;
        }
    }
    r = d2o_jdoc_parse(doc, data, len, why, sizeof(why));
    if (r == -EINVAL && d2o_jdoc_error_kind(doc) == D2O_JDOC_E_SYNTAX) {
        if (!describe_syntax_error(data, len, errstr, errstr_size)) {
            snprintf(errstr, errstr_size, "record is not valid JSON: %s", why);
        }
    } else if (r == -EINVAL) {
        snprintf(errstr, errstr_size, "record refused: %s", why);
    } else if (r < 0) {
        snprintf(errstr, errstr_size, "%s", why);
    }
    if (r < 0) {
        if (spare_doc) {
            d2o_jdoc_free(doc);
        } else {
            spare_doc = doc;
        }
        return r;
    }
    *out = doc;
    return 0;
}

int d2o_record_parse(const char *data, size_t len, struct d2o_record *out, char *errstr,
                     size_t errstr_size)
{
    const struct d2o_jnode *root, *v, *ddb, *who;
    struct d2o_jdoc *doc = NULL;
    const char *name;
    int r;

    memset(out, 0, sizeof(*out));
    out->size_bytes = -1;
    if (len > (size_t)INT32_MAX) {
        snprintf(errstr, errstr_size, "record of %zu bytes is too large", len);
        return -EINVAL;
    }
    r = parse_doc(data, len, &doc, errstr, errstr_size);
    if (r < 0) {
        return r;
    }
    out->root = doc;
    root = d2o_jdoc_root(doc);
    if (!is(root, D2O_JOBJECT)) {
        return refuse(out, errstr, errstr_size, "record is not a JSON object");
    }

    v = member(root, "eventName");
    if (!is(v, D2O_JSTRING)) {
        return refuse(out, errstr, errstr_size, "eventName is %s", v ? "not a string" : "missing");
    }
    name = d2o_jdoc_cstr(doc, v);
    if (!name) {
        return refuse(out, errstr, errstr_size, "out of memory");
    }
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
    if (!is(v, D2O_JSTRING) || v->len == 0) {
        return refuse(out, errstr, errstr_size, "tableName is %s",
                      !v                   ? "missing"
                      : is(v, D2O_JSTRING) ? "empty"
                                           : "not a string");
    }
    out->table = d2o_jdoc_cstr(doc, v);
    v = member(root, "eventID");
    out->event_id = is(v, D2O_JSTRING) ? d2o_jdoc_cstr(doc, v) : NULL;
    if (!out->table || (is(v, D2O_JSTRING) && !out->event_id)) {
        return refuse(out, errstr, errstr_size, "out of memory");
    }

    ddb = member(root, "dynamodb");
    if (!is(ddb, D2O_JOBJECT)) {
        return refuse(out, errstr, errstr_size, "dynamodb is %s",
                      ddb ? "not an object" : "missing");
    }
    out->keys = member(ddb, "Keys");
    if (!is(out->keys, D2O_JOBJECT) || out->keys->len == 0) {
        return refuse(out, errstr, errstr_size, "dynamodb.Keys is %s",
                      !out->keys                   ? "missing"
                      : is(out->keys, D2O_JOBJECT) ? "empty"
                                                   : "not an object");
    }
    if (out->keys->len > 2) {
        return refuse(out, errstr, errstr_size,
                      "dynamodb.Keys has %zu attributes; a DynamoDB key has one or two",
                      out->keys->len);
    }
    out->new_image = member(ddb, "NewImage");
    out->old_image = member(ddb, "OldImage");
    if (out->new_image && !is(out->new_image, D2O_JOBJECT)) {
        return refuse(out, errstr, errstr_size, "dynamodb.NewImage is not an object");
    }
    if (out->old_image && !is(out->old_image, D2O_JOBJECT)) {
        return refuse(out, errstr, errstr_size, "dynamodb.OldImage is not an object");
    }
    if (out->event != D2O_EVENT_REMOVE && !out->new_image) {
        return refuse(out, errstr, errstr_size, "dynamodb.NewImage is missing (eventName %s)",
                      name);
    }

    v = member(ddb, "ApproximateCreationDateTime");
    if (!d2o_jnode_is_integer(v)) {
        return refuse(out, errstr, errstr_size, "dynamodb.ApproximateCreationDateTime is %s",
                      v ? "not an integer (epoch milliseconds or microseconds)" : "missing");
    }
    /* beyond the int64 range the value reads as the nearest end of it (and is refused below
     * as out of range when negative) */
    (void)d2o_jnode_int64(v, &out->approx_creation);
    if (out->approx_creation <= 0) {
        return refuse(out, errstr, errstr_size,
                      "dynamodb.ApproximateCreationDateTime %lld is out of range",
                      (long long)out->approx_creation);
    }
    v = member(ddb, "ApproximateCreationDateTimePrecision");
    if (v) {
        if (!is(v, D2O_JSTRING)) {
            return refuse(out, errstr, errstr_size,
                          "dynamodb.ApproximateCreationDateTimePrecision is not a string");
        }
        if (cstr_is(doc, v, "MILLISECOND")) {
            out->precision = D2O_PRECISION_MILLISECOND;
        } else if (cstr_is(doc, v, "MICROSECOND")) {
            out->precision = D2O_PRECISION_MICROSECOND;
        } else if (cstr_is(doc, v, "SECOND")) {
            out->precision = D2O_PRECISION_SECOND;
        } else {
            return refuse(out, errstr, errstr_size,
                          "dynamodb.ApproximateCreationDateTimePrecision '%.20s' is not "
                          "MILLISECOND, MICROSECOND or SECOND",
                          d2o_jdoc_cstr(doc, v) ? d2o_jdoc_cstr(doc, v) : "");
        }
    } else {
        /* Older records carry no precision: a value of 1e15 or more can only be microseconds. */
        out->precision = out->approx_creation >= 1000000000000000LL ? D2O_PRECISION_MICROSECOND
                                                                    : D2O_PRECISION_MILLISECOND;
    }
    /* seconds come from a DynamoDB stream read directly: none is later than 9999-12-31 */
    if (out->precision == D2O_PRECISION_SECOND && out->approx_creation > 253402300799LL) {
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
    if (d2o_jnode_is_integer(v)) {
        (void)d2o_jnode_int64(v, &out->size_bytes);
    }
    who = member(root, "userIdentity");
    if (is(who, D2O_JOBJECT)) {
        out->ttl_delete = out->event == D2O_EVENT_REMOVE &&
                          cstr_is(doc, member(who, "type"), "Service") &&
                          cstr_is(doc, member(who, "principalId"), "dynamodb.amazonaws.com");
    }
    return 0;
}
