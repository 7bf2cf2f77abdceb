/*
 * Pure parser of _bulk responses: one status and error per item, in request order.
 *
 * yajl's callbacks read the answer once, without a tree: each item's status, _id and error go
 * straight into its d2o_bulk_item_status. The request's filter_path leaves little else to skip.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "d2o/bulk.h"
#include "d2o/yjson.h"

/* What the parser expects next. */
enum bk_want {
    W_ROOT,
    W_SKIP,
    W_ITEMS,  /* the answer's items */
    W_ITEM,   /* an element of items */
    W_OP,     /* the one member of an item: {action: result} */
    W_STATUS, /* the result's members */
    W_ID,
    W_ERROR,
    W_TYPE, /* the error's members */
    W_REASON,
    W_CAUSE,
    W_CAUSE_TYPE, /* caused_by's members */
    W_CAUSE_REASON,
};

/* Containers entered, one level each. */
enum bk_level { L_NONE, L_ROOT, L_ITEMS, L_ITEM, L_OP, L_ERROR, L_CAUSE };

/* Where a value nobody reads as a whole goes, as its JSON text (the error's members when they
 * are not strings, a mismatched _id). */
struct bk_text {
    char *dst;
    size_t size;
};

struct bk {
    struct d2o_yjson y;
    const char *body;
    size_t n;
    const char *const *ids;
    struct d2o_bulk_item_status *out, spare; /* spare: items past n, counted only */
    enum bk_want want;
    int level;
    struct bk_text capture;   /* where a skipped container's text goes, if anywhere */
    bool root_ok, items_seen; /* the answer is an object with an items array */
    size_t i;                 /* the current item */
    struct {
        struct d2o_bulk_item_status *st;
        size_t keys; /* members of {action: result} */
        bool op_map, has_status, status_int, id_wrong, cause;
        int64_t status;
        bool cause_type_set;
        char got[65]; /* a mismatched _id, cut as the message cuts it */
        char cause_type[512], cause_reason[512];
    } cur;
    bool item_failed; /* the first item error is in item_err */
    char item_err[256];
};

static void bk_item_fail(struct bk *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void bk_item_fail(struct bk *p, const char *fmt, ...)
{
    va_list ap;

    if (p->item_failed) {
        return;
    }
    p->item_failed = true;
    va_start(ap, fmt);
    vsnprintf(p->item_err, sizeof(p->item_err), fmt, ap);
    va_end(ap);
}

/* Copies n bytes into dst (size bytes), cut to fit, NUL-terminated. */
static void put_text(char *dst, size_t size, const void *s, size_t n)
{
    if (n >= size) {
        n = size - 1;
    }
    memcpy(dst, s, n);
    dst[n] = '\0';
}

/* A value of an error member that is kept as text: a string as it is, anything else as its JSON
 * text (null as nothing). A container is copied once it ends. */
static void bk_keep(struct bk *p, enum d2o_yjson_kind k, const unsigned char *s, size_t n,
                    char *dst, size_t size)
{
    switch (k) {
    case D2O_YJ_NULL:
        dst[0] = '\0';
        break;
    case D2O_YJ_BOOL:
    case D2O_YJ_NUM:
    case D2O_YJ_STR:
        put_text(dst, size, s, n);
        break;
    case D2O_YJ_MAP:
    case D2O_YJ_ARR:
        p->capture.dst = dst;
        p->capture.size = size;
        break;
    }
}

static void bk_item_start(struct bk *p)
{
    p->level = L_ITEM;
    memset(&p->cur, 0, offsetof(__typeof__(p->cur), got));
    p->cur.got[0] = '\0';
    p->cur.st = p->i < p->n ? &p->out[p->i] : &p->spare;
    memset(p->cur.st, 0, sizeof(*p->cur.st));
}

/* The end of item i: its checks in their fixed order. */
static void bk_item_end(struct bk *p)
{
    size_t i = p->i++;

    if (p->cur.keys != 1) {
        bk_item_fail(p, "bulk response item %zu is not {action: result}", i);
    } else if (!p->cur.op_map || !p->cur.has_status || !p->cur.status_int) {
        bk_item_fail(p, "bulk response item %zu has no status", i);
    } else if (p->cur.status < 100 || p->cur.status > 599) {
        bk_item_fail(p, "bulk response item %zu has status %lld", i, (long long)p->cur.status);
    } else if (p->cur.id_wrong) {
        bk_item_fail(p, "bulk response item %zu is for _id \"%.64s\", sent \"%.64s\"", i,
                     p->cur.got, p->ids[i]);
    } else {
        p->cur.st->status = (int)p->cur.status;
    }
}

/* Appends the text s to dst (size bytes, NUL-terminated), cut to fit. */
static void append(char *dst, size_t size, const char *s)
{
    size_t used = strlen(dst);

    put_text(dst + used, size - used, s, strlen(s));
}

/* The end of an item's error object: "; caused by <type>: <reason>" goes after the reason. */
static void bk_error_end(struct bk *p)
{
    struct d2o_bulk_item_status *st = p->cur.st;

    if (p->cur.cause) {
        append(st->error_reason, sizeof(st->error_reason), "; caused by ");
        append(st->error_reason, sizeof(st->error_reason),
               p->cur.cause_type_set ? p->cur.cause_type : "?");
        append(st->error_reason, sizeof(st->error_reason), ": ");
        append(st->error_reason, sizeof(st->error_reason), p->cur.cause_reason);
    }
}

/* A value starts (a scalar, or the opening of an object or an array). */
static int bk_value(void *ctx, enum d2o_yjson_kind k, const unsigned char *s, size_t n)
{
    struct bk *p = ctx;
    struct d2o_bulk_item_status *st = p->cur.st;

    switch (p->want) {
    case W_ROOT:
        if (k == D2O_YJ_MAP) {
            p->root_ok = true;
            p->level = L_ROOT;
            return 1;
        }
        break;
    case W_ITEMS:
        if (k == D2O_YJ_ARR) {
            p->items_seen = true;
            p->level = L_ITEMS;
            p->want = W_ITEM;
            return 1;
        }
        break;
    case W_ITEM:
        if (k == D2O_YJ_MAP) {
            bk_item_start(p);
            return 1;
        }
        bk_item_fail(p, "bulk response item %zu is not {action: result}", p->i++);
        return k >= D2O_YJ_MAP ? D2O_YJSON_SKIP : 1; /* the next element comes */
    case W_OP:
        if (k == D2O_YJ_MAP) {
            p->cur.op_map = true;
            p->level = L_OP;
            return 1;
        }
        break;
    case W_STATUS:
        p->cur.has_status = k != D2O_YJ_NULL;
        p->cur.status_int = k == D2O_YJ_NUM && d2o_yjson_int((const char *)s, n, &p->cur.status);
        break;
    case W_ID:
        if (k == D2O_YJ_STR && n == strlen(p->ids[p->i]) && memcmp(s, p->ids[p->i], n) == 0) {
            p->cur.id_wrong = false;
            break;
        }
        p->cur.id_wrong = true;
        bk_keep(p, k, s, n, p->cur.got, sizeof(p->cur.got));
        break;
    case W_ERROR:
        st->error_type[0] = st->error_reason[0] = '\0';
        p->cur.cause = false;
        if (k == D2O_YJ_MAP) {
            p->level = L_ERROR;
            return 1;
        }
        bk_keep(p, k, s, n, st->error_reason, sizeof(st->error_reason));
        break;
    case W_TYPE:
        bk_keep(p, k, s, n, st->error_type, sizeof(st->error_type));
        break;
    case W_REASON:
        bk_keep(p, k, s, n, st->error_reason, sizeof(st->error_reason));
        break;
    case W_CAUSE:
        if (k == D2O_YJ_MAP) {
            p->cur.cause = true;
            p->cur.cause_type_set = false;
            p->cur.cause_reason[0] = '\0';
            p->level = L_CAUSE;
            return 1;
        }
        p->cur.cause = false;
        break;
    case W_CAUSE_TYPE:
        p->cur.cause_type_set = k != D2O_YJ_NULL;
        bk_keep(p, k, s, n, p->cur.cause_type, sizeof(p->cur.cause_type));
        break;
    case W_CAUSE_REASON:
        bk_keep(p, k, s, n, p->cur.cause_reason, sizeof(p->cur.cause_reason));
        break;
    case W_SKIP:
        break;
    }
    return k >= D2O_YJ_MAP ? D2O_YJSON_SKIP : 1; /* a container nobody reads, or read as text */
}

#define KEY_IS(k, n, lit) ((n) == sizeof(lit) - 1 && memcmp((k), (lit), (n)) == 0)

static int bk_key(void *ctx, const unsigned char *k, size_t n)
{
    struct bk *p = ctx;

    p->want = W_SKIP;
    switch (p->level) {
    case L_ROOT:
        if (KEY_IS(k, n, "items")) {
            /* a member given twice counts once, the last time, as in a tree */
            p->want = W_ITEMS;
            p->items_seen = false;
            p->i = 0;
            p->item_failed = false;
        }
        break;
    case L_ITEM:
        if (++p->cur.keys == 1) {
            p->want = W_OP;
        }
        break;
    case L_OP:
        if (KEY_IS(k, n, "status")) {
            p->want = W_STATUS;
        } else if (KEY_IS(k, n, "_id")) {
            p->want = p->ids && p->i < p->n && p->ids[p->i] ? W_ID : W_SKIP;
        } else if (KEY_IS(k, n, "error")) {
            p->want = W_ERROR;
        }
        break;
    case L_ERROR:
        if (KEY_IS(k, n, "type")) {
            p->want = W_TYPE;
        } else if (KEY_IS(k, n, "reason")) {
            p->want = W_REASON;
        } else if (KEY_IS(k, n, "caused_by")) {
            p->want = W_CAUSE;
        }
        break;
    case L_CAUSE:
        if (KEY_IS(k, n, "type")) {
            p->want = W_CAUSE_TYPE;
        } else if (KEY_IS(k, n, "reason")) {
            p->want = W_CAUSE_REASON;
        }
        break;
    default:
        break;
    }
    return 1;
}

static int bk_end(void *ctx)
{
    struct bk *p = ctx;

    switch (p->level) {
    case L_ITEM:
        bk_item_end(p);
        p->want = W_ITEM;
        break;
    case L_ERROR:
        bk_error_end(p);
        break;
    default:
        break;
    }
    p->level--;
    return 1;
}

/* A skipped object or array closed: its text goes where bk_keep said. */
static void bk_skipped(void *ctx, size_t at, size_t end)
{
    struct bk *p = ctx;

    if (p->capture.dst) {
        put_text(p->capture.dst, p->capture.size, p->body + at, end - at);
        p->capture.dst = NULL;
    }
}

static const struct d2o_yjson_handler bk_handler = {bk_value, bk_key, bk_end, bk_skipped};

int d2o_bulk_parse_response(const char *body, size_t len, size_t n, const char *const *ids,
                            struct d2o_bulk_item_status *out, char *errstr, size_t errstr_size)
{
    struct bk *p;
    int s, r = -EINVAL;

    if (len > (size_t)INT32_MAX) {
        snprintf(errstr, errstr_size, "bulk response of %zu bytes is too large", len);
        return -EINVAL;
    }
    if (len == 0) {
        snprintf(errstr, errstr_size, "bulk response is empty");
        return -EINVAL;
    }
    p = calloc(1, sizeof(*p));
    if (!p) {
        snprintf(errstr, errstr_size, "out of memory");
        return -ENOMEM;
    }
    p->body = body;
    p->n = n;
    p->ids = ids;
    p->out = out;
    p->cur.st = &p->spare;
    s = d2o_yjson_parse(&p->y, &bk_handler, p, body, len);
    if (s == D2O_YJSON_NOMEM || s == D2O_YJSON_CANCELED) {
        snprintf(errstr, errstr_size, "out of memory");
        r = -ENOMEM;
    } else if (s == D2O_YJSON_TRUNCATED || s == D2O_YJSON_INVALID) {
        snprintf(errstr, errstr_size, "bulk response is not JSON (%s, %zu bytes)",
                 s == D2O_YJSON_TRUNCATED ? "truncated" : p->y.why, len);
    } else if (s == D2O_YJSON_TRAILING) {
        snprintf(errstr, errstr_size, "bulk response has %zu bytes after its JSON value",
                 len - p->y.value_end);
    } else if (!p->root_ok || !p->items_seen) {
        snprintf(errstr, errstr_size, "bulk response has no items array");
    } else if (p->i != n) {
        snprintf(errstr, errstr_size, "bulk response has %zu items for %zu sent", p->i, n);
    } else if (p->item_failed) {
        snprintf(errstr, errstr_size, "%s", p->item_err);
    } else {
        r = 0;
    }
    free(p);
    return r;
}
