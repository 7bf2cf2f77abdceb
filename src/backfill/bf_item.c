/*
 * Pure helpers of backfill and verify: a scanned item as a change record, the backfill version,
 * and a reader of OpenSearch search answers that keeps each _source's exact bytes.
 */
#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "d2o/backfill.h"
#include "d2o/dynamodb.h"
#include "d2o/util.h"

int d2o_ddb_item_record(const char *table, struct json_object *item, const char *hash_key,
                        const char *range_key, int64_t version_us, struct d2o_buf *out,
                        char *errstr, size_t errstr_size)
{
    size_t mark = out->len;
    int r;

    r = d2o_buf_puts(out, "{\"eventName\":\"INSERT\",\"eventSource\":\"ddb2os:scan\","
                          "\"tableName\":");
    if (r == 0) {
        r = d2o_buf_json_str(out, table, strlen(table));
    }
    if (r == 0) {
        r = d2o_buf_printf(out,
                           ",\"dynamodb\":{\"ApproximateCreationDateTime\":%lld,"
                           "\"ApproximateCreationDateTimePrecision\":\"MICROSECOND\",\"Keys\":",
                           (long long)version_us);
    }
    if (r == 0) {
        r = d2o_ddb_item_key(item, hash_key, range_key, out, errstr, errstr_size);
    }
    if (r == 0) {
        r = d2o_buf_puts(out, ",\"NewImage\":");
    }
    if (r == 0) {
        r = d2o_buf_puts(out, json_object_to_json_string_ext(
                                  item, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
    }
    if (r == 0) {
        r = d2o_buf_puts(out, "}}");
    }
    if (r != 0) {
        d2o_buf_truncate(out, mark);
        if (r == -ENOMEM) {
            snprintf(errstr, errstr_size, "out of memory");
        }
    }
    return r;
}

int64_t d2o_backfill_version(int64_t server_ms, int64_t local_ms, int64_t skew_ms)
{
    int64_t t = local_ms;

    if (server_ms > 0 && (t <= 0 || server_ms < t)) {
        t = server_ms;
    }
    if (skew_ms < 0) {
        skew_ms = 0;
    }
    if (t <= skew_ms) {
        return 1;
    }
    return (t - skew_ms) * 1000;
}

/* ---- search answers: a small JSON scanner that returns spans ---- */

struct scan {
    const char *p, *end;
    int depth;
};

#define MAX_DEPTH 128

static void ws(struct scan *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\n' || *s->p == '\r' || *s->p == '\t')) {
        s->p++;
    }
}

static int expect(struct scan *s, char c)
{
    ws(s);
    if (s->p >= s->end || *s->p != c) {
        return -EINVAL;
    }
    s->p++;
    return 0;
}

/* Skips a string starting at a quote; start and len receive the raw text between the quotes. */
static int skip_string(struct scan *s, const char **start, size_t *len)
{
    const char *b;

    if (expect(s, '"') < 0) {
        return -EINVAL;
    }
    b = s->p;
    while (s->p < s->end && *s->p != '"') {
        if ((unsigned char)*s->p < 0x20) {
            return -EINVAL;
        }
        if (*s->p == '\\') {
            s->p++;
            if (s->p >= s->end) {
                return -EINVAL;
            }
        }
        s->p++;
    }
    if (s->p >= s->end) {
        return -EINVAL;
    }
    if (start) {
        *start = b;
        *len = (size_t)(s->p - b);
    }
    s->p++;
    return 0;
}

static int skip_value(struct scan *s);

static int skip_container(struct scan *s, char open, char close)
{
    int r;

    if (++s->depth > MAX_DEPTH) {
        return -EINVAL;
    }
    s->p++; /* open */
    ws(s);
    if (s->p < s->end && *s->p == close) {
        s->p++;
        s->depth--;
        return 0;
    }
    for (;;) {
        if (open == '{') {
            r = skip_string(s, NULL, NULL);
            if (r == 0) {
                r = expect(s, ':');
            }
            if (r < 0) {
                return r;
            }
        }
        r = skip_value(s);
        if (r < 0) {
            return r;
        }
        ws(s);
        if (s->p < s->end && *s->p == ',') {
            s->p++;
            continue;
        }
        if (s->p < s->end && *s->p == close) {
            s->p++;
            s->depth--;
            return 0;
        }
        return -EINVAL;
    }
}

static int skip_value(struct scan *s)
{
    const char *b;

    ws(s);
    if (s->p >= s->end) {
        return -EINVAL;
    }
    switch (*s->p) {
    case '{':
        return skip_container(s, '{', '}');
    case '[':
        return skip_container(s, '[', ']');
    case '"':
        return skip_string(s, NULL, NULL);
    default:
        b = s->p;
        while (s->p < s->end &&
               (strchr("+-.0123456789eE", *s->p) || (*s->p >= 'a' && *s->p <= 'z'))) {
            s->p++;
        }
        return s->p > b ? 0 : -EINVAL;
    }
}

/* ---- canonical form: the same document whatever the order of its members ---- */

struct member {
    const char *key; /* raw key text between the quotes */
    size_t key_len;
    char *value; /* canonical text of the value */
    size_t value_len;
};

static int cmp_member(const void *a, const void *b)
{
    const struct member *x = a, *y = b;
    size_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
    int c = n ? memcmp(x->key, y->key, n) : 0; /* an empty key may have no bytes at all */

    if (c != 0) {
        return c;
    }
    if (x->key_len != y->key_len) {
        return x->key_len < y->key_len ? -1 : 1;
    }
    n = x->value_len < y->value_len ? x->value_len : y->value_len;
    c = memcmp(x->value, y->value, n);
    return c != 0 ? c : (x->value_len < y->value_len ? -1 : x->value_len > y->value_len);
}

static int canon_value(struct scan *s, struct d2o_buf *out);

/* An object's members sorted by key, an array's elements sorted by their canonical text. */
static int canon_container(struct scan *s, struct d2o_buf *out, char open, char close)
{
    struct member *m = NULL;
    size_t n = 0, cap = 0, i;
    int r = 0;

    if (++s->depth > MAX_DEPTH) {
        return -EINVAL;
    }
    s->p++;
    ws(s);
    if (s->p < s->end && *s->p == close) {
        s->p++;
    } else {
        for (;;) {
            struct d2o_buf v = D2O_BUF_INIT;
            const char *k = NULL;
            size_t kn = 0;

            if (n == cap) {
                struct member *g = realloc(m, (cap ? cap * 2 : 8) * sizeof(*m));

                if (!g) {
                    r = -ENOMEM;
                    break;
                }
                m = g;
                cap = cap ? cap * 2 : 8;
            }
            if (open == '{') {
                r = skip_string(s, &k, &kn);
                r = r ? r : expect(s, ':');
            }
            r = r ? r : canon_value(s, &v);
            if (r != 0) {
                d2o_buf_free(&v);
                break;
            }
            m[n].key = k;
            m[n].key_len = kn;
            m[n].value_len = v.len;
            m[n].value = d2o_buf_steal(&v);
            n++;
            ws(s);
            if (s->p < s->end && *s->p == ',') {
                s->p++;
                continue;
            }
            r = expect(s, close);
            break;
        }
    }
    if (r == 0) {
        if (n > 1) {
            qsort(m, n, sizeof(*m), cmp_member);
        }
        r = d2o_buf_putc(out, open);
        for (i = 0; r == 0 && i < n; i++) {
            if (i > 0) {
                r = d2o_buf_putc(out, ',');
            }
            if (r == 0 && open == '{') {
                r = d2o_buf_putc(out, '"');
                r = r ? r : d2o_buf_append(out, m[i].key, m[i].key_len);
                r = r ? r : d2o_buf_puts(out, "\":");
            }
            r = r ? r : d2o_buf_append(out, m[i].value ? m[i].value : "", m[i].value_len);
        }
        r = r ? r : d2o_buf_putc(out, close);
    }
    for (i = 0; i < n; i++) {
        free(m[i].value);
    }
    free(m);
    s->depth--;
    return r;
}

static int canon_value(struct scan *s, struct d2o_buf *out)
{
    const char *b;
    int r;

    ws(s);
    if (s->p >= s->end) {
        return -EINVAL;
    }
    if (*s->p == '{') {
        return canon_container(s, out, '{', '}');
    }
    if (*s->p == '[') {
        return canon_container(s, out, '[', ']');
    }
    b = s->p;
    r = skip_value(s);
    return r ? r : d2o_buf_append(out, b, (size_t)(s->p - b));
}

int d2o_json_canonical(const char *text, size_t len, struct d2o_buf *out)
{
    struct scan s = {text, text + len, 0};
    size_t mark = out->len;
    int r = canon_value(&s, out);

    if (r == 0) {
        ws(&s);
        if (s.p != s.end) {
            r = -EINVAL;
        }
    }
    if (r != 0) {
        d2o_buf_truncate(out, mark);
    }
    return r;
}

/* Decodes a JSON string's raw text (between the quotes) with json-c into out. */
static int decode_string(const char *raw, size_t len, struct d2o_buf *out)
{
    struct d2o_buf q = D2O_BUF_INIT;
    json_object *o = NULL;
    int r;

    r = d2o_buf_putc(&q, '"');
    if (r == 0) {
        r = d2o_buf_append(&q, raw, len);
    }
    if (r == 0) {
        r = d2o_buf_putc(&q, '"');
    }
    if (r == 0) {
        o = json_tokener_parse(q.data);
        if (!o || !json_object_is_type(o, json_type_string)) {
            r = -EINVAL;
        } else {
            r = d2o_buf_append(out, json_object_get_string(o),
                               (size_t)json_object_get_string_len(o) + 1);
        }
    }
    json_object_put(o);
    d2o_buf_free(&q);
    return r;
}

static bool key_is(const char *k, size_t n, const char *name)
{
    return strlen(name) == n && memcmp(k, name, n) == 0;
}

struct hit_tmp {
    size_t id_off; /* offset into the id storage, SIZE_MAX = none */
    int64_t version;
    bool has_version;
    const char *source, *sort;
    size_t source_len, sort_len;
};

static int walk_object(struct scan *s, int (*on_key)(struct scan *, const char *, size_t, void *),
                       void *ctx);

struct hit_ctx {
    struct hit_tmp *h;
    struct d2o_buf *ids;
};

static int hit_key(struct scan *s, const char *k, size_t kn, void *arg)
{
    struct hit_ctx *c = arg;
    struct hit_tmp *h = c->h;
    const char *b;
    int r;

    ws(s);
    b = s->p;
    if (key_is(k, kn, "_id") && s->p < s->end && *s->p == '"') {
        const char *raw;
        size_t rn;

        r = skip_string(s, &raw, &rn);
        if (r == 0) {
            h->id_off = c->ids->len;
            r = decode_string(raw, rn, c->ids);
        }
        return r;
    }
    r = skip_value(s);
    if (r != 0) {
        return r;
    }
    if (key_is(k, kn, "_version")) {
        /* a _version that is not an integer counts as none */
        h->has_version =
            d2o_parse_i64n(b, (size_t)(s->p - b), INT64_MIN, INT64_MAX, &h->version) == 0;
    } else if (key_is(k, kn, "_source")) {
        h->source = b;
        h->source_len = (size_t)(s->p - b);
    } else if (key_is(k, kn, "sort")) {
        h->sort = b;
        h->sort_len = (size_t)(s->p - b);
    }
    return 0;
}

static int parse_hit(struct scan *s, struct hit_tmp *h, struct d2o_buf *ids)
{
    struct hit_ctx c = {h, ids};

    memset(h, 0, sizeof(*h));
    h->id_off = SIZE_MAX;
    return walk_object(s, hit_key, &c);
}

void d2o_os_page_free(struct d2o_os_page *page)
{
    if (!page) {
        return;
    }
    free(page->hits);
    free(page->pit_id);
    free(page->ids);
    memset(page, 0, sizeof(*page));
}

/* Reads the "hits" array of the inner hits object into tmp. */
static int parse_hits_array(struct scan *s, struct hit_tmp **tmp, size_t *n, size_t *cap,
                            struct d2o_buf *ids)
{
    int r;

    if (expect(s, '[') < 0) {
        return -EINVAL;
    }
    ws(s);
    if (s->p < s->end && *s->p == ']') {
        s->p++;
        return 0;
    }
    for (;;) {
        if (*n == *cap) {
            size_t nc = *cap ? *cap * 2 : 64;
            struct hit_tmp *g = realloc(*tmp, nc * sizeof(**tmp));

            if (!g) {
                return -ENOMEM;
            }
            *tmp = g;
            *cap = nc;
        }
        r = parse_hit(s, &(*tmp)[*n], ids);
        if (r < 0) {
            return r;
        }
        (*n)++;
        ws(s);
        if (s->p < s->end && *s->p == ',') {
            s->p++;
            continue;
        }
        return expect(s, ']');
    }
}

/* Walks an object, calling on_key for each key (which consumes the value). */
static int walk_object(struct scan *s, int (*on_key)(struct scan *, const char *, size_t, void *),
                       void *ctx)
{
    const char *k;
    size_t kn;
    int r;

    if (expect(s, '{') < 0) {
        return -EINVAL;
    }
    ws(s);
    if (s->p < s->end && *s->p == '}') {
        s->p++;
        return 0;
    }
    for (;;) {
        r = skip_string(s, &k, &kn);
        if (r == 0) {
            r = expect(s, ':');
        }
        if (r == 0) {
            r = on_key(s, k, kn, ctx);
        }
        if (r < 0) {
            return r;
        }
        ws(s);
        if (s->p < s->end && *s->p == ',') {
            s->p++;
            continue;
        }
        return expect(s, '}');
    }
}

struct walk_ctx {
    struct hit_tmp *tmp;
    size_t n, cap;
    struct d2o_buf ids;
    struct d2o_buf pit;
    bool have_hits;
    bool have_pit;
};

static int inner_key(struct scan *s, const char *k, size_t kn, void *arg)
{
    struct walk_ctx *w = arg;

    ws(s);
    if (key_is(k, kn, "hits") && s->p < s->end && *s->p == '[') {
        w->have_hits = true;
        return parse_hits_array(s, &w->tmp, &w->n, &w->cap, &w->ids);
    }
    return skip_value(s);
}

static int outer_key(struct scan *s, const char *k, size_t kn, void *arg)
{
    struct walk_ctx *w = arg;

    ws(s);
    if (key_is(k, kn, "hits") && s->p < s->end && *s->p == '{') {
        return walk_object(s, inner_key, w);
    }
    if (key_is(k, kn, "pit_id") && s->p < s->end && *s->p == '"') {
        const char *raw;
        size_t rn;
        int r = skip_string(s, &raw, &rn);

        if (r == 0) {
            d2o_buf_reset(&w->pit);
            r = decode_string(raw, rn, &w->pit);
            w->have_pit = r == 0;
        }
        return r;
    }
    return skip_value(s);
}

int d2o_os_parse_hits(const char *body, size_t len, struct d2o_os_page *page, char *errstr,
                      size_t errstr_size)
{
    struct scan s = {body, body + len, 0};
    struct walk_ctx w;
    size_t i;
    int r;

    memset(page, 0, sizeof(*page));
    memset(&w, 0, sizeof(w));
    if (!body) {
        snprintf(errstr, errstr_size, "search answer: empty");
        return -EINVAL;
    }
    r = walk_object(&s, outer_key, &w);
    if (r == 0) {
        ws(&s);
        if (s.p != s.end) {
            r = -EINVAL;
        }
    }
    if (r < 0) {
        snprintf(errstr, errstr_size, "search answer: %s at byte %zu",
                 r == -ENOMEM ? "out of memory" : "not valid JSON", (size_t)(s.p - body));
        goto out;
    }
    if (!w.have_hits) {
        snprintf(errstr, errstr_size, "search answer: no hits.hits array");
        r = -EINVAL;
        goto out;
    }
    for (i = 0; i < w.n; i++) {
        if (w.tmp[i].id_off == SIZE_MAX || !w.tmp[i].has_version || !w.tmp[i].source ||
            !w.tmp[i].sort) {
            snprintf(errstr, errstr_size, "search answer: hit %zu has no %s", i,
                     w.tmp[i].id_off == SIZE_MAX ? "_id"
                     : !w.tmp[i].has_version     ? "_version"
                     : !w.tmp[i].source          ? "_source"
                                                 : "sort");
            r = -EINVAL;
            goto out;
        }
    }
    if (w.n > 0) {
        page->hits = calloc(w.n, sizeof(*page->hits));
        if (!page->hits) {
            r = -ENOMEM;
            goto out;
        }
    }
    page->ids = d2o_buf_steal(&w.ids);
    for (i = 0; i < w.n; i++) {
        page->hits[i].id = page->ids + w.tmp[i].id_off;
        page->hits[i].version = w.tmp[i].version;
        page->hits[i].source = w.tmp[i].source;
        page->hits[i].source_len = w.tmp[i].source_len;
        page->hits[i].sort = w.tmp[i].sort;
        page->hits[i].sort_len = w.tmp[i].sort_len;
    }
    page->n_hits = w.n;
    if (w.have_pit) {
        page->pit_id = d2o_buf_steal(&w.pit);
    }
out:
    free(w.tmp);
    d2o_buf_free(&w.ids);
    d2o_buf_free(&w.pit);
    if (r < 0) {
        d2o_os_page_free(page);
    }
    return r;
}
