/*
 * `ddb2os verify`: compares a table with its index in memory that does not grow with the table.
 *
 * 1. Table side: worker processes scan the segments of a parallel Scan; each item becomes its
 *    document through the stream's path (d2o_doc_build_at) and is written to a bucket file chosen
 *    by a hash of the document id: id, SHA-256 of the document text, and the item's key.
 * 2. Index side: a point-in-time search over the index, sorted by _id with search_after, writes
 *    id, SHA-256 of the _source bytes, version and flags (tombstone, TTL-expired) to the same
 *    buckets.
 * 3. Bucket by bucket (each holds at most about bucket_items entries), the table entries go into a
 *    hash table and the index entries are matched against it: missing (no live document),
 *    extra (a live document without an item), stale (the document differs and its version is
 *    older than the verify's scan start V0: a change the index missed) and different (it differs
 *    at a version from after V0: changed while verify ran, or written by something else).
 * 4. --repair: for every id found, its item is read again (GetItem, strongly consistent) after a
 *    version V_r was taken from DynamoDB's clock, and the item is written (or the document
 *    deleted) at V_r through the bulk sink: the same rule as the backfill, so a change made after
 *    the read still wins.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bf_int.h"
#include "d2o/backfill.h"
#include "d2o/cli.h"
#include "d2o/clock.h"
#include "d2o/conf.h"
#include "d2o/record.h"
#include "d2o/wait.h"

#define CMD "verify"
#define DIGEST 16
#define PAGE_SIZE_OS 1000

enum cls { C_MISSING = 0, C_EXTRA, C_STALE, C_DIFFERENT, C_N };
static const char *const cls_names[C_N] = {"missing", "extra", "stale", "different"};

#define F_TOMBSTONE 1u
#define F_TTL_EXPIRED 2u

static volatile sig_atomic_t stop_flag;

struct vctx {
    struct d2o_config *conf;
    const struct d2o_verify_opts *o;
    char dir[512];
    unsigned buckets;
    int64_t v0;
    char hash[256];
    const char *range;
    char hash_type, range_type;
    char *ttl_attr;
    char *index;
    uint64_t items, docs, counts[C_N];
    char **samples[C_N];
    size_t n_samples[C_N];
    FILE *diff;        /* id and key of every difference, for --repair */
    char **superseded; /* sample of ids --repair could not overwrite */
    size_t n_superseded;
};

static uint64_t fnv1a(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    size_t i;

    for (i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ULL;
    }
    return h;
}

/* SHA-256 (first bytes) of the document's canonical text; -EINVAL when it is not JSON. */
static int digest(const char *p, size_t n, unsigned char out[DIGEST])
{
    struct d2o_buf canon = D2O_BUF_INIT;
    unsigned char full[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    int r = d2o_json_canonical(p, n, &canon);

    if (r == 0) {
        EVP_Digest(canon.data, canon.len, full, &len, EVP_sha256(), NULL);
        memcpy(out, full, DIGEST);
    }
    d2o_buf_free(&canon);
    return r;
}

static int put_blob(FILE *f, const void *p, uint32_t n)
{
    return fwrite(&n, sizeof(n), 1, f) == 1 && (n == 0 || fwrite(p, n, 1, f) == 1) ? 0 : -EIO;
}

static int get_blob(FILE *f, char **p, uint32_t *n)
{
    if (fread(n, sizeof(*n), 1, f) != 1) {
        return 1; /* end */
    }
    *p = malloc((size_t)*n + 1);
    if (!*p) {
        return -ENOMEM;
    }
    if (*n && fread(*p, *n, 1, f) != 1) {
        free(*p);
        *p = NULL;
        return -EIO;
    }
    (*p)[*n] = '\0';
    return 0;
}

static FILE *bucket_open(const struct vctx *v, const char *side, int part, unsigned b,
                         const char *mode)
{
    char path[640];

    snprintf(path, sizeof(path), "%s/%s.%d.%u", v->dir, side, part, b);
    return fopen(path, mode);
}

/* ---- table side (worker processes) ---- */

static int table_worker(struct vctx *v, unsigned slot, unsigned workers, unsigned segments)
{
    struct bf_clients cl;
    struct d2o_ddb_scan_req q;
    struct d2o_ddb_scan_page page;
    struct d2o_ddb_err err;
    struct d2o_buf rec_text = D2O_BUF_INIT, key = D2O_BUF_INIT;
    FILE **out = NULL;
    char errstr[512];
    char *last = NULL;
    unsigned seg, b;
    size_t i;
    int rc = 1;

    if (bf_clients_open(&cl, v->conf, NULL, NULL, false, NULL, &stop_flag, errstr, sizeof(errstr)) <
        0) {
        fprintf(stderr, "ddb2os verify: %s\n", errstr);
        return 1;
    }
    out = calloc(v->buckets, sizeof(*out));
    if (!out) {
        goto done;
    }
    for (b = 0; b < v->buckets; b++) {
        out[b] = bucket_open(v, "t", (int)slot, b, "w");
        if (!out[b]) {
            fprintf(stderr, "ddb2os verify: cannot write in %s\n", v->dir);
            goto done;
        }
    }
    for (seg = slot; seg < segments; seg += workers) {
        do {
            memset(&q, 0, sizeof(q));
            q.table = v->o->table;
            q.segment = (int)seg;
            q.total_segments = (int)segments;
            q.exclusive_start_key = last;
            q.limit = 1000;
            q.consistent_read = v->o->consistent_read;
            if (d2o_ddb_scan(cl.ddb, &q, &page, &err) != 0) {
                fprintf(stderr, "ddb2os verify: %s\n", err.message);
                goto done;
            }
            for (i = 0; i < page.n_items; i++) {
                json_object *item = json_object_array_get_idx(page.items, i);
                struct d2o_record rec;
                struct d2o_doc_op op;
                unsigned char dg[DIGEST];
                const char *doc;
                int r;

                d2o_buf_reset(&rec_text);
                d2o_buf_reset(&key);
                r = d2o_ddb_item_record(v->o->table, item, v->hash, v->range, v->v0, &rec_text,
                                        errstr, sizeof(errstr));
                if (r == 0) {
                    r = d2o_ddb_item_key(item, v->hash, v->range, &key, errstr, sizeof(errstr));
                }
                if (r == 0) {
                    r = d2o_record_parse(rec_text.data, rec_text.len, &rec, errstr, sizeof(errstr));
                }
                if (r == 0) {
                    r = d2o_doc_build_at(&rec, v->conf, v->v0, &op, errstr, sizeof(errstr));
                    d2o_record_free(&rec);
                }
                if (r < 0) {
                    fprintf(stderr, "ddb2os verify: an item cannot become a document: %s\n",
                            errstr);
                    continue;
                }
                doc = strchr(op.ndjson.data, '\n') + 1;
                if (digest(doc, strlen(doc) - 1, dg) < 0) {
                    memset(dg, 0, sizeof(dg));
                }
                b = (unsigned)(fnv1a(op.id, strlen(op.id)) % v->buckets);
                if (put_blob(out[b], op.id, (uint32_t)strlen(op.id)) < 0 ||
                    fwrite(dg, DIGEST, 1, out[b]) != 1 ||
                    put_blob(out[b], key.data, (uint32_t)key.len) < 0) {
                    d2o_doc_op_free(&op);
                    fprintf(stderr, "ddb2os verify: cannot write in %s\n", v->dir);
                    goto done;
                }
                d2o_doc_op_free(&op);
            }
            free(last);
            last = page.last_key;
            page.last_key = NULL;
            d2o_ddb_scan_page_free(&page);
        } while (last && !stop_flag);
    }
    rc = stop_flag ? 1 : 0;
done:
    for (b = 0; out && b < v->buckets; b++) {
        if (out[b] && fclose(out[b]) != 0) {
            rc = 1;
        }
    }
    free(out);
    free(last);
    d2o_buf_free(&rec_text);
    d2o_buf_free(&key);
    bf_clients_close(&cl);
    return rc;
}

/* ---- index side ---- */

static bool ttl_expired(const struct vctx *v, const char *src, size_t len, int64_t now_s)
{
    json_object *o, *t;
    bool expired = false;

    if (!v->ttl_attr || v->conf->ttl_deletes != D2O_TTL_KEEP) {
        return false;
    }
    o = json_tokener_parse(src); /* src is a span: parse a copy */
    (void)len;
    if (o && json_object_object_get_ex(o, v->ttl_attr, &t) &&
        (json_object_is_type(t, json_type_int) || json_object_is_type(t, json_type_double))) {
        expired = json_object_get_int64(t) < now_s;
    }
    json_object_put(o);
    return expired;
}

static int index_side(struct vctx *v, struct bf_clients *cl)
{
    struct d2o_http_response resp;
    struct d2o_buf body = D2O_BUF_INIT, path = D2O_BUF_INIT, after = D2O_BUF_INIT;
    struct d2o_os_page page;
    FILE **out = NULL;
    char *pit = NULL, errstr[512];
    int64_t now_s = time(NULL);
    unsigned b;
    size_t i;
    int rc = -1;

    memset(&resp, 0, sizeof(resp));
    memset(&page, 0, sizeof(page));
    out = calloc(v->buckets, sizeof(*out));
    if (!out) {
        goto done;
    }
    for (b = 0; b < v->buckets; b++) {
        out[b] = bucket_open(v, "i", 0, b, "w");
        if (!out[b]) {
            goto done;
        }
    }
    if (d2o_buf_printf(&path, "/%s/_search/point_in_time?keep_alive=5m", v->index) < 0 ||
        bf_os_request(cl, v->conf, "POST", path.data, NULL, &resp) != 0) {
        fprintf(stderr, "ddb2os verify: OpenSearch: %s\n", resp.errstr);
        goto done;
    }
    if (resp.status == 404) {
        /* no index at all: every item is missing */
        rc = 0;
        goto done;
    }
    {
        json_object *o = json_tokener_parse(resp.body.data ? resp.body.data : ""), *p;

        if (resp.status != 200 || !o || !json_object_object_get_ex(o, "pit_id", &p)) {
            fprintf(stderr,
                    "ddb2os verify: cannot open a point in time on index %s: HTTP %ld %.300s\n",
                    v->index, resp.status, resp.body.data ? resp.body.data : "");
            json_object_put(o);
            goto done;
        }
        pit = strdup(json_object_get_string(p));
        json_object_put(o);
    }
    for (;;) {
        d2o_buf_reset(&body);
        d2o_http_response_free(&resp);
        if (d2o_buf_printf(&body,
                           "{\"size\":%d,\"pit\":{\"id\":\"%s\",\"keep_alive\":\"5m\"},"
                           "\"sort\":[{\"_id\":\"asc\"}],\"version\":true,"
                           "\"track_total_hits\":false%s%s}",
                           PAGE_SIZE_OS, pit, after.len ? ",\"search_after\":" : "",
                           after.len ? after.data : "") < 0 ||
            bf_os_request(cl, v->conf, "POST", "/_search", body.data, &resp) != 0 ||
            resp.status != 200) {
            fprintf(stderr, "ddb2os verify: search on index %s failed: HTTP %ld %.300s\n", v->index,
                    resp.status, resp.body.data ? resp.body.data : resp.errstr);
            goto done;
        }
        if (d2o_os_parse_hits(resp.body.data, resp.body.len, &page, errstr, sizeof(errstr)) < 0) {
            fprintf(stderr, "ddb2os verify: %s\n", errstr);
            goto done;
        }
        if (page.pit_id && strcmp(page.pit_id, pit) != 0) {
            free(pit);
            pit = strdup(page.pit_id);
        }
        for (i = 0; i < page.n_hits; i++) {
            const struct d2o_os_hit *h = &page.hits[i];
            unsigned char dg[DIGEST], flags = 0;
            char *src = strndup(h->source, h->source_len);

            if (!src) {
                goto done;
            }
            if (strncmp(src, "{\"_deleted\":true", 16) == 0) {
                flags |= F_TOMBSTONE;
            } else if (ttl_expired(v, src, h->source_len, now_s)) {
                flags |= F_TTL_EXPIRED;
            }
            if (digest(h->source, h->source_len, dg) < 0) {
                /* not JSON (cannot happen for a _source span): compare as different */
                memset(dg, 0xff, sizeof(dg));
            }
            b = (unsigned)(fnv1a(h->id, strlen(h->id)) % v->buckets);
            if (put_blob(out[b], h->id, (uint32_t)strlen(h->id)) < 0 ||
                fwrite(dg, DIGEST, 1, out[b]) != 1 ||
                fwrite(&h->version, sizeof(h->version), 1, out[b]) != 1 ||
                fwrite(&flags, 1, 1, out[b]) != 1 ||
                put_blob(out[b], src, (uint32_t)h->source_len) < 0) {
                free(src);
                goto done;
            }
            free(src);
        }
        if (page.n_hits == 0) {
            break;
        }
        d2o_buf_reset(&after);
        if (d2o_buf_append(&after, page.hits[page.n_hits - 1].sort,
                           page.hits[page.n_hits - 1].sort_len) < 0) {
            goto done;
        }
        d2o_os_page_free(&page);
    }
    rc = 0;
done:
    if (pit) {
        d2o_buf_reset(&body);
        if (d2o_buf_printf(&body, "{\"pit_id\":[\"%s\"]}", pit) == 0) {
            d2o_http_response_free(&resp);
            (void)bf_os_request(cl, v->conf, "DELETE", "/_search/point_in_time", body.data, &resp);
        }
    }
    for (b = 0; out && b < v->buckets; b++) {
        if (out[b] && fclose(out[b]) != 0) {
            rc = -1;
        }
    }
    free(out);
    free(pit);
    d2o_os_page_free(&page);
    d2o_http_response_free(&resp);
    d2o_buf_free(&body);
    d2o_buf_free(&path);
    d2o_buf_free(&after);
    return rc;
}

/* ---- compare, bucket by bucket ---- */

struct entry {
    char *id;
    char *key;
    unsigned char dg[DIGEST];
    bool seen;
};

struct table {
    struct entry *e;
    size_t cap, n;
};

static int table_put(struct table *t, struct entry *in)
{
    size_t i;

    if ((t->n + 1) * 2 > t->cap) {
        struct table nt = {NULL, t->cap ? t->cap * 2 : 1024, 0};

        nt.e = calloc(nt.cap, sizeof(*nt.e));
        if (!nt.e) {
            return -ENOMEM;
        }
        for (i = 0; i < t->cap; i++) {
            if (t->e[i].id) {
                size_t j = fnv1a(t->e[i].id, strlen(t->e[i].id)) >> 7 & (nt.cap - 1);

                while (nt.e[j].id) {
                    j = (j + 1) & (nt.cap - 1);
                }
                nt.e[j] = t->e[i];
                nt.n++;
            }
        }
        free(t->e);
        *t = nt;
    }
    i = fnv1a(in->id, strlen(in->id)) >> 7 & (t->cap - 1);
    while (t->e[i].id) {
        i = (i + 1) & (t->cap - 1);
    }
    t->e[i] = *in;
    t->n++;
    return 0;
}

static struct entry *table_get(struct table *t, const char *id)
{
    size_t i;

    if (!t->cap) {
        return NULL;
    }
    i = fnv1a(id, strlen(id)) >> 7 & (t->cap - 1);
    while (t->e[i].id) {
        if (strcmp(t->e[i].id, id) == 0) {
            return &t->e[i];
        }
        i = (i + 1) & (t->cap - 1);
    }
    return NULL;
}

static void table_free(struct table *t)
{
    size_t i;

    for (i = 0; i < t->cap; i++) {
        free(t->e[i].id);
        free(t->e[i].key);
    }
    free(t->e);
    memset(t, 0, sizeof(*t));
}

static void found(struct vctx *v, enum cls c, const char *id, const char *key, const char *source)
{
    v->counts[c]++;
    if (v->n_samples[c] < v->o->samples) {
        char **g = realloc(v->samples[c], (v->n_samples[c] + 1) * sizeof(*g));

        if (g) {
            v->samples[c] = g;
            g[v->n_samples[c]] = strdup(id);
            if (g[v->n_samples[c]]) {
                v->n_samples[c]++;
            }
        }
    }
    if (v->diff) {
        /* class, id, and the item's key (or, for an extra document, its source) */
        (void)put_blob(v->diff, cls_names[c], (uint32_t)strlen(cls_names[c]));
        (void)put_blob(v->diff, id, (uint32_t)strlen(id));
        (void)put_blob(v->diff, key ? key : source, (uint32_t)strlen(key ? key : source));
    }
}

static int compare_bucket(struct vctx *v, unsigned b, unsigned parts)
{
    struct table t = {NULL, 0, 0};
    struct entry e;
    unsigned p;
    size_t i;
    FILE *f;
    uint32_t n;
    int r = 0;

    for (p = 0; p < parts && r == 0; p++) {
        f = bucket_open(v, "t", (int)p, b, "r");
        if (!f) {
            return -EIO;
        }
        for (;;) {
            memset(&e, 0, sizeof(e));
            r = get_blob(f, &e.id, &n);
            if (r != 0) {
                r = r > 0 ? 0 : r;
                break;
            }
            if (fread(e.dg, DIGEST, 1, f) != 1 || get_blob(f, &e.key, &n) != 0) {
                free(e.id);
                r = -EIO;
                break;
            }
            v->items++;
            if (table_get(&t, e.id)) {
                /* a parallel Scan returns each item once; a repeat is a bug, not drift */
                free(e.id);
                free(e.key);
                continue;
            }
            r = table_put(&t, &e);
            if (r < 0) {
                free(e.id);
                free(e.key);
                break;
            }
        }
        fclose(f);
    }
    f = r == 0 ? bucket_open(v, "i", 0, b, "r") : NULL;
    while (f && r == 0) {
        char *id = NULL, *src = NULL;
        unsigned char dg[DIGEST], flags;
        int64_t version;
        struct entry *te;

        r = get_blob(f, &id, &n);
        if (r != 0) {
            r = r > 0 ? 0 : r;
            break;
        }
        if (fread(dg, DIGEST, 1, f) != 1 || fread(&version, sizeof(version), 1, f) != 1 ||
            fread(&flags, 1, 1, f) != 1 || get_blob(f, &src, &n) != 0) {
            free(id);
            r = -EIO;
            break;
        }
        te = table_get(&t, id);
        if (!(flags & F_TOMBSTONE)) {
            v->docs++;
        }
        if (!te) {
            if (!(flags & (F_TOMBSTONE | F_TTL_EXPIRED))) {
                found(v, C_EXTRA, id, NULL, src);
            }
        } else {
            te->seen = true;
            if (flags & F_TOMBSTONE) {
                found(v, C_MISSING, id, te->key, NULL);
            } else if (memcmp(te->dg, dg, DIGEST) != 0) {
                found(v, version < v->v0 ? C_STALE : C_DIFFERENT, id, te->key, NULL);
            }
        }
        free(id);
        free(src);
    }
    if (f) {
        fclose(f);
    }
    for (i = 0; r == 0 && i < t.cap; i++) {
        if (t.e[i].id && !t.e[i].seen) {
            found(v, C_MISSING, t.e[i].id, t.e[i].key, NULL);
        }
    }
    table_free(&t);
    return r;
}

/* ---- repair ---- */

struct repair_item {
    int state; /* 0 waiting, 1 written, 2 superseded by a newer version, -1 failed */
    char *id;
};

static void on_repaired(void *cookie, const struct d2o_bulk_result *res, void *arg)
{
    struct repair_item *ri = cookie;

    (void)arg;
    ri->state = res->outcome == D2O_BULK_DLQ ? -1 : res->outcome == D2O_BULK_STALE ? 2 : 1;
}

/* The key of an extra document, from its source and the key's types. */
static int key_from_source(const struct vctx *v, const char *src, struct d2o_buf *key)
{
    json_object *o = json_tokener_parse(src), *a;
    const char *names[2] = {v->hash, v->range};
    const char types[2] = {v->hash_type ? v->hash_type : 'S', v->range_type ? v->range_type : 'S'};
    int i, r = o ? 0 : -EINVAL;

    r = r ? r : d2o_buf_putc(key, '{');
    for (i = 0; i < 2 && r == 0 && names[i]; i++) {
        const char *text;

        if (!json_object_object_get_ex(o, names[i], &a)) {
            r = -EINVAL;
            break;
        }
        text = json_object_is_type(a, json_type_string) ? json_object_get_string(a)
                                                        : json_object_to_json_string(a);
        r = d2o_buf_printf(key, "%s", i ? "," : "");
        r = r ? r : d2o_buf_json_str(key, names[i], strlen(names[i]));
        r = r ? r : d2o_buf_printf(key, ":{\"%c\":", types[i]);
        r = r ? r : d2o_buf_json_str(key, text, strlen(text));
        r = r ? r : d2o_buf_putc(key, '}');
    }
    r = r ? r : d2o_buf_putc(key, '}');
    json_object_put(o);
    return r;
}

/*
 * A delete of document id at version vr. For a document that no item's key leads to: the stream
 * never writes it, so removing it cannot undo a change.
 */
static int foreign_delete(const struct vctx *v, const char *id, int64_t vr, struct d2o_doc_op *op)
{
    int r = 0;

    memset(op, 0, sizeof(*op));
    op->action = D2O_DOC_DELETE;
    op->version = vr;
    op->index = strdup(v->index);
    op->id = strdup(id);
    if (!op->index || !op->id) {
        r = -ENOMEM;
    }
    r = r ? r : d2o_buf_puts(&op->ndjson, "{\"delete\":{\"_index\":");
    r = r ? r : d2o_buf_json_str(&op->ndjson, op->index, strlen(op->index));
    r = r ? r : d2o_buf_puts(&op->ndjson, ",\"_id\":");
    r = r ? r : d2o_buf_json_str(&op->ndjson, id, strlen(id));
    r = r ? r
          : d2o_buf_printf(&op->ndjson, ",\"version\":%lld,\"version_type\":\"external\"}}\n",
                           (long long)vr);
    if (r != 0) {
        d2o_doc_op_free(op);
    }
    return r;
}

static int repair(struct vctx *v, struct bf_clients *cl, uint64_t *fixed, uint64_t *superseded,
                  uint64_t *failed)
{
    struct d2o_ddb_table desc;
    struct d2o_ddb_err err;
    struct d2o_buf rec = D2O_BUF_INIT, key = D2O_BUF_INIT;
    struct repair_item *ri = NULL;
    size_t n = 0, cap = 0, i;
    int64_t vr;
    char errstr[512];
    int r = 0;

    rewind(v->diff);
    v->superseded = calloc(v->o->samples + 1, sizeof(*v->superseded));
    if (!v->superseded) {
        return -1;
    }
    /* V_r: DynamoDB's time before any of the reads below, minus the margin. */
    if (d2o_ddb_describe_table(cl->ddb, v->o->table, &desc, &err) != 0) {
        fprintf(stderr, "ddb2os verify: %s\n", err.message);
        return -1;
    }
    d2o_ddb_table_free(&desc);
    vr = d2o_backfill_version(d2o_ddb_server_time_ms(cl->ddb), d2o_wall_us() / 1000, v->o->skew_ms);
    for (;;) {
        char *c = NULL, *id = NULL, *ks = NULL;
        uint32_t len;
        json_object *item = NULL;
        struct d2o_record drec;
        struct d2o_doc_op op;
        bool foreign;

        if (get_blob(v->diff, &c, &len) != 0) {
            break;
        }
        if (get_blob(v->diff, &id, &len) != 0 || get_blob(v->diff, &ks, &len) != 0) {
            free(c);
            free(id);
            r = -1;
            break;
        }
        d2o_buf_reset(&key);
        d2o_buf_reset(&rec);
        foreign = false;
        if (strcmp(c, "extra") == 0) {
            /* a document without the key attributes was not made from any item */
            foreign = key_from_source(v, ks, &key) < 0;
        } else {
            r = d2o_buf_puts(&key, ks);
        }
        if (foreign) {
            r = foreign_delete(v, id, vr, &op);
        }
        if (r == 0 && !foreign &&
            d2o_ddb_get_item(cl->ddb, v->o->table, key.data, true, &item, &err) != 0) {
            fprintf(stderr, "ddb2os verify: %s\n", err.message);
            r = -1;
        }
        if (r == 0 && item) {
            r = d2o_ddb_item_record(v->o->table, item, v->hash, v->range, vr, &rec, errstr,
                                    sizeof(errstr));
        } else if (r == 0) {
            r = d2o_buf_printf(&rec,
                               "{\"eventName\":\"REMOVE\",\"tableName\":\"%s\",\"dynamodb\":{"
                               "\"ApproximateCreationDateTime\":%lld,"
                               "\"ApproximateCreationDateTimePrecision\":\"MICROSECOND\","
                               "\"Keys\":%s}}",
                               v->o->table, (long long)vr, key.data);
        }
        json_object_put(item);
        if (r == 0 && !foreign) {
            r = d2o_record_parse(rec.data, rec.len, &drec, errstr, sizeof(errstr));
            if (r == 0) {
                r = d2o_doc_build_at(&drec, v->conf, vr, &op, errstr, sizeof(errstr));
                d2o_record_free(&drec);
            }
            if (r == 0 && strcmp(op.id, id) != 0) {
                /* its key attributes name another document: this one is nobody's */
                d2o_doc_op_free(&op);
                r = foreign_delete(v, id, vr, &op);
            }
        }
        if (r == 0) {
            if (n == cap) {
                size_t nc = cap ? cap * 2 : 256;
                struct repair_item *g = realloc(ri, nc * sizeof(*g));

                if (!g) {
                    d2o_doc_op_free(&op);
                    r = -ENOMEM;
                } else {
                    /* cookies point into ri: queue only after all reads (see below) */
                    ri = g;
                    cap = nc;
                }
            }
        }
        if (r == 0) {
            ri[n].state = 0;
            ri[n].id = strdup(id);
            /* a grown array would move the cookies: drain before it can grow */
            if (d2o_bulk_add(cl->sink, op.ndjson.data, op.ndjson.len, op.action == D2O_DOC_DELETE,
                             &ri[n]) < 0) {
                r = -ENOMEM;
            }
            n++;
            d2o_doc_op_free(&op);
            if (n == cap && d2o_bulk_drain(cl->sink, 600000) < 0) {
                r = -ETIMEDOUT;
            }
        } else {
            fprintf(stderr, "ddb2os verify: cannot repair %s: %s\n", id, errstr);
            (*failed)++;
            r = 0;
        }
        free(c);
        free(id);
        free(ks);
        if (r < 0) {
            break;
        }
    }
    if (r == 0 && d2o_bulk_drain(cl->sink, 600000) < 0) {
        r = -1;
    }
    for (i = 0; i < n; i++) {
        if (ri[i].state == 1) {
            (*fixed)++;
        } else if (ri[i].state == 2) {
            (*superseded)++;
            if (v->n_superseded < v->o->samples && ri[i].id) {
                v->superseded[v->n_superseded++] = ri[i].id;
                ri[i].id = NULL;
            }
        } else {
            (*failed)++;
        }
    }
    for (i = 0; i < n; i++) {
        free(ri[i].id);
    }
    free(ri);
    d2o_buf_free(&rec);
    d2o_buf_free(&key);
    return r;
}

/* ---- report ---- */

static void report(const struct vctx *v, bool match, bool repaired, uint64_t fixed,
                   uint64_t superseded, uint64_t failed)
{
    unsigned c;
    size_t i;

    if (v->o->json) {
        json_object *o = json_object_new_object();

        json_object_object_add(o, "table", json_object_new_string(v->o->table));
        json_object_object_add(o, "index", json_object_new_string(v->index));
        json_object_object_add(o, "items", json_object_new_int64((int64_t)v->items));
        json_object_object_add(o, "documents", json_object_new_int64((int64_t)v->docs));
        json_object_object_add(o, "match", json_object_new_boolean(match));
        json_object_object_add(o, "scan_version", json_object_new_int64(v->v0));
        for (c = 0; c < C_N; c++) {
            json_object *k = json_object_new_object(), *a = json_object_new_array();

            json_object_object_add(k, "count", json_object_new_int64((int64_t)v->counts[c]));
            for (i = 0; i < v->n_samples[c]; i++) {
                json_object_array_add(a, json_object_new_string(v->samples[c][i]));
            }
            json_object_object_add(k, "sample", a);
            json_object_object_add(o, cls_names[c], k);
        }
        if (repaired) {
            json_object *k = json_object_new_object(), *a = json_object_new_array();

            json_object_object_add(o, "repaired", json_object_new_int64((int64_t)fixed));
            json_object_object_add(k, "count", json_object_new_int64((int64_t)superseded));
            for (i = 0; i < v->n_superseded; i++) {
                json_object_array_add(a, json_object_new_string(v->superseded[i]));
            }
            json_object_object_add(k, "sample", a);
            json_object_object_add(o, "superseded", k);
            json_object_object_add(o, "repair_failed", json_object_new_int64((int64_t)failed));
        }
        printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
        json_object_put(o);
        return;
    }
    printf("verify: table %s: %" PRIu64 " items; index %s: %" PRIu64 " documents: %s\n",
           v->o->table, v->items, v->index, v->docs, match ? "MATCH" : "DIFFERENT");
    for (c = 0; c < C_N; c++) {
        printf("  %-10s %" PRIu64, cls_names[c], v->counts[c]);
        for (i = 0; i < v->n_samples[c]; i++) {
            printf("%s%s", i ? " " : "  e.g. ", v->samples[c][i]);
        }
        printf("\n");
    }
    if (repaired) {
        printf("  repaired   %" PRIu64 ", superseded %" PRIu64
               " (the index holds a newer version), "
               "failed %" PRIu64 "; run verify again to confirm\n",
               fixed, superseded, failed);
    }
}

int d2o_verify_run(struct d2o_config *conf, const struct d2o_verify_opts *o)
{
    struct vctx v;
    struct bf_clients cl;
    struct d2o_ddb_table desc;
    struct d2o_http_response resp;
    char errstr[512], path[600];
    const char *tmp = o->work_dir ? o->work_dir : getenv("TMPDIR");
    pid_t *pids = NULL;
    uint64_t fixed = 0, superseded = 0, failed = 0, total;
    unsigned i, b;
    int rc = D2O_EXIT_FAIL, st;
    bool match, bad = false;

    memset(&v, 0, sizeof(v));
    memset(&cl, 0, sizeof(cl));
    memset(&desc, 0, sizeof(desc));
    memset(&resp, 0, sizeof(resp));
    v.conf = conf;
    v.o = o;
    bf_on_signals(&stop_flag);
    if (d2o_http_global_init() < 0) {
        return D2O_EXIT_FAIL;
    }
    snprintf(v.dir, sizeof(v.dir), "%s/ddb2os-verify.XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    if (!mkdtemp(v.dir)) {
        fprintf(stderr, "ddb2os verify: cannot create a directory in %s\n",
                tmp && tmp[0] ? tmp : "/tmp");
        v.dir[0] = '\0';
        goto out;
    }
    if (bf_clients_open(&cl, conf, NULL, NULL, false, NULL, &stop_flag, errstr, sizeof(errstr)) <
        0) {
        fprintf(stderr, "ddb2os verify: %s\n", errstr);
        goto out;
    }
    rc = bf_describe(&cl, conf, o->table, &desc, &v.ttl_attr, CMD);
    if (rc != 0) {
        goto out;
    }
    rc = D2O_EXIT_FAIL;
    v.v0 = d2o_backfill_version(d2o_ddb_server_time_ms(cl.ddb), d2o_wall_us() / 1000, o->skew_ms);
    bf_key_names(conf, o->table, v.hash, sizeof(v.hash), &v.range);
    v.hash_type = desc.hash_type;
    v.range_type = desc.range_type;
    v.index = d2o_conf_index_for_table(conf, o->table);
    snprintf(path, sizeof(path), "/%s/_count", v.index ? v.index : "");
    total = (uint64_t)(desc.item_count > 0 ? desc.item_count : 0);
    if (v.index && bf_os_request(&cl, conf, "GET", path, NULL, &resp) == 0 && resp.status == 200) {
        json_object *j = json_tokener_parse(resp.body.data), *c;

        if (j && json_object_object_get_ex(j, "count", &c) &&
            (uint64_t)json_object_get_int64(c) > total) {
            total = (uint64_t)json_object_get_int64(c);
        }
        json_object_put(j);
    }
    d2o_http_response_free(&resp);
    v.buckets = (unsigned)(total / o->bucket_items + 1);
    /* table side in worker processes, opened after fork() */
    bf_clients_close(&cl);
    pids = calloc(o->workers, sizeof(*pids));
    if (!pids) {
        goto out;
    }
    for (i = 0; i < o->workers; i++) {
        pids[i] = fork();
        if (pids[i] == 0) {
            _exit(table_worker(&v, i, o->workers, o->segments));
        }
    }
    if (bf_clients_open(&cl, conf, o->repair ? on_repaired : NULL, NULL, false, NULL, &stop_flag,
                        errstr, sizeof(errstr)) < 0) {
        fprintf(stderr, "ddb2os verify: %s\n", errstr);
        bad = true;
    }
    if (!bad && index_side(&v, &cl) < 0) {
        bad = true;
    }
    for (i = 0; i < o->workers; i++) {
        if (pids[i] > 0 && (waitpid(pids[i], &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st))) {
            bad = true;
        }
    }
    if (bad || stop_flag) {
        fprintf(stderr, "ddb2os verify: the comparison did not complete\n");
        goto out;
    }
    if (o->repair) {
        snprintf(path, sizeof(path), "%s/diff", v.dir);
        v.diff = fopen(path, "w+");
        if (!v.diff) {
            goto out;
        }
    }
    for (b = 0; b < v.buckets; b++) {
        if (compare_bucket(&v, b, o->workers) < 0) {
            fprintf(stderr, "ddb2os verify: cannot read the bucket files in %s\n", v.dir);
            goto out;
        }
    }
    match =
        v.counts[C_MISSING] + v.counts[C_EXTRA] + v.counts[C_STALE] + v.counts[C_DIFFERENT] == 0;
    if (o->repair && !match && repair(&v, &cl, &fixed, &superseded, &failed) < 0) {
        failed++;
    }
    report(&v, match, o->repair && !match, fixed, superseded, failed);
    rc = match || (o->repair && failed == 0) ? D2O_EXIT_OK : D2O_EXIT_FAIL;
out:
    if (v.diff) {
        fclose(v.diff);
    }
    if (v.dir[0]) {
        /* remove the bucket files and the directory */
        char cmdpath[640];
        unsigned p;

        for (b = 0; b < v.buckets; b++) {
            for (p = 0; p < o->workers; p++) {
                snprintf(cmdpath, sizeof(cmdpath), "%s/t.%u.%u", v.dir, p, b);
                unlink(cmdpath);
            }
            snprintf(cmdpath, sizeof(cmdpath), "%s/i.0.%u", v.dir, b);
            unlink(cmdpath);
        }
        snprintf(cmdpath, sizeof(cmdpath), "%s/diff", v.dir);
        unlink(cmdpath);
        rmdir(v.dir);
    }
    for (i = 0; i < C_N; i++) {
        size_t j;

        for (j = 0; j < v.n_samples[i]; j++) {
            free(v.samples[i][j]);
        }
        free(v.samples[i]);
    }
    for (i = 0; i < v.n_superseded; i++) {
        free(v.superseded[i]);
    }
    free(v.superseded);
    free(pids);
    free(v.ttl_attr);
    free(v.index);
    d2o_ddb_table_free(&desc);
    bf_clients_close(&cl);
    return rc;
}
