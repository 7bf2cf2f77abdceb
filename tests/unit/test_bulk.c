/*
 * The bulk sink without a server: the pure formatter and parser (on responses captured from a
 * real OpenSearch 2.19 node, tests/unit/data/bulk/capture.py), and the sender's batching, per-item
 * retry, split and ordering logic over a scripted transport and a fake clock.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "d2o/bulk.h"
#include "d2o/classify.h"
#include "d2o/log.h"
#include "d2o/rand.h"
#include "d2o_test.h"

/* ---- helpers ---- */

static char *slurp(const char *name, size_t *len)
{
    char path[512];
    FILE *f;
    char *data;
    long n;

    snprintf(path, sizeof(path), "%s/bulk/%s", D2O_TEST_DATA, name);
    f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
    n = ftell(f);
    ck_assert_int_ge(n, 0);
    rewind(f);
    data = malloc((size_t)n + 1);
    ck_assert_ptr_nonnull(data);
    ck_assert_uint_eq(fread(data, 1, (size_t)n, f), (size_t)n);
    data[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return data;
}

/* The _id of each item of an NDJSON body (delete has no source line). Returns the count. */
static size_t body_ids(const char *body, size_t len, char **ids, size_t max, bool *deletes)
{
    size_t n = 0, off = 0;

    while (off < len && n < max) {
        char verb[8], *index = NULL, *id = NULL, err[128];
        const char *nl;

        ck_assert_int_eq(
            d2o_bulk_action_key(body + off, len - off, verb, &index, &id, err, sizeof(err)), 0);
        free(index);
        ids[n] = id;
        if (deletes) {
            deletes[n] = strcmp(verb, "delete") == 0;
        }
        nl = memchr(body + off, '\n', len - off);
        ck_assert_ptr_nonnull(nl);
        off = (size_t)(nl - body) + 1;
        if (strcmp(verb, "delete") != 0) {
            nl = memchr(body + off, '\n', len - off);
            ck_assert_ptr_nonnull(nl);
            off = (size_t)(nl - body) + 1;
        }
        n++;
    }
    return n;
}

static void free_ids(char **ids, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        free(ids[i]);
    }
}

/* ---- pure parts ---- */

START_TEST(batch_count_honours_size_and_count)
{
    size_t lens[] = {100, 100, 100, 100, 100};
    size_t giant[] = {1000, 10, 10};
    size_t after[] = {10, 10, 1000, 10};

    ck_assert_uint_eq(d2o_bulk_batch_count(lens, 5, 1000, 3), 3);  /* count */
    ck_assert_uint_eq(d2o_bulk_batch_count(lens, 5, 250, 100), 2); /* size */
    ck_assert_uint_eq(d2o_bulk_batch_count(lens, 5, 300, 100), 3); /* exactly full */
    ck_assert_uint_eq(d2o_bulk_batch_count(lens, 5, 10000, 100), 5);
    ck_assert_uint_eq(d2o_bulk_batch_count(giant, 3, 500, 100), 1); /* a giant goes alone */
    ck_assert_uint_eq(d2o_bulk_batch_count(after, 4, 500, 100), 2); /* and not with others */
    ck_assert_uint_eq(d2o_bulk_batch_count(after + 2, 2, 500, 100), 1);
    ck_assert_uint_eq(d2o_bulk_batch_count(lens, 0, 500, 100), 0);
    ck_assert_uint_eq(d2o_bulk_batch_count(lens, 5, 500, 0), 1);
}
END_TEST

START_TEST(action_key_reads_index_and_id)
{
    static const char idx[] = "{\"index\":{\"_index\":\"books\",\"_id\":\"a|b\\\\c\",\"version\":"
                              "7,\"version_type\":\"external\"}}\n{\"t\":1}\n";
    static const char del[] = "{\"delete\":{\"_index\":\"books\",\"_id\":\"x\"}}";
    char verb[8], *index, *id, err[128];

    ck_assert_int_eq(d2o_bulk_action_key(idx, strlen(idx), verb, &index, &id, err, sizeof(err)), 0);
    ck_assert_str_eq(verb, "index");
    ck_assert_str_eq(index, "books");
    ck_assert_str_eq(id, "a|b\\c");
    free(index);
    free(id);
    ck_assert_int_eq(d2o_bulk_action_key(del, strlen(del), verb, &index, &id, err, sizeof(err)), 0);
    ck_assert_str_eq(verb, "delete");
    ck_assert_str_eq(id, "x");
    free(index);
    free(id);
    ck_assert_int_eq(d2o_bulk_action_key("{\"t\":1}\n", 8, verb, &index, &id, err, sizeof(err)),
                     -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "is not index|create|update|delete"));
    ck_assert_ptr_null(index);
    ck_assert_int_eq(d2o_bulk_action_key("{\"index\":", 9, verb, &index, &id, err, sizeof(err)),
                     -EINVAL);
    ck_assert_int_eq(d2o_bulk_action_key("\n", 1, verb, &index, &id, err, sizeof(err)), -EINVAL);
    ck_assert_int_eq(d2o_bulk_action_key("{\"index\":3}", 11, verb, &index, &id, err, sizeof(err)),
                     -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "no metadata object"));
}
END_TEST

struct expect {
    int status;
    const char *type;
    enum d2o_item_class cls;
};

static void check_fixture(const char *name, const struct expect *want, size_t n_want)
{
    char path[64], *req, *resp, *ids[16], err[256];
    size_t req_len, resp_len, n, i;
    bool deletes[16];
    struct d2o_bulk_item_status st[16];

    snprintf(path, sizeof(path), "%s.ndjson", name);
    req = slurp(path, &req_len);
    snprintf(path, sizeof(path), "%s.json", name);
    resp = slurp(path, &resp_len);
    n = body_ids(req, req_len, ids, 16, deletes);
    ck_assert_uint_eq(n, n_want);
    ck_assert_msg(d2o_bulk_parse_response(resp, resp_len, n, (const char *const *)ids, st, err,
                                          sizeof(err)) == 0,
                  "%s: %s", name, err);
    for (i = 0; i < n; i++) {
        ck_assert_msg(st[i].status == want[i].status, "%s item %zu: status %d", name, i,
                      st[i].status);
        ck_assert_str_eq(st[i].error_type, want[i].type);
        ck_assert_msg(d2o_classify_bulk_item(st[i].status,
                                             st[i].error_type[0] ? st[i].error_type : NULL,
                                             deletes[i]) == want[i].cls,
                      "%s item %zu: class", name, i);
    }
    free_ids(ids, n);
    free(req);
    free(resp);
}

START_TEST(parses_captured_responses)
{
    static const struct expect created[] = {
        {201, "", D2O_ITEM_DONE}, {201, "", D2O_ITEM_DONE}, {201, "", D2O_ITEM_DONE}};
    static const struct expect mixed[] = {
        {200, "", D2O_ITEM_DONE},
        {409, "version_conflict_engine_exception", D2O_ITEM_STALE},
        {404, "", D2O_ITEM_ABSENT},
        {400, "mapper_parsing_exception", D2O_ITEM_PERMANENT},
        {400, "strict_dynamic_mapping_exception", D2O_ITEM_PERMANENT},
        {200, "", D2O_ITEM_DONE},
        {409, "version_conflict_engine_exception", D2O_ITEM_STALE},
    };
    static const struct expect unfiltered[] = {
        {201, "", D2O_ITEM_DONE},
        {409, "version_conflict_engine_exception", D2O_ITEM_STALE},
        {404, "", D2O_ITEM_ABSENT},
    };
    static const struct expect no_index[] = {
        {400, "invalid_index_name_exception", D2O_ITEM_PERMANENT}};

    check_fixture("all_created", created, 3);
    check_fixture("mixed", mixed, 7);
    check_fixture("mixed_unfiltered", unfiltered, 3);
    check_fixture("no_index", no_index, 1);
}
END_TEST

START_TEST(error_reason_keeps_the_cause)
{
    size_t len;
    char *resp = slurp("mixed.json", &len), err[256];
    struct d2o_bulk_item_status st[7];

    ck_assert_int_eq(d2o_bulk_parse_response(resp, len, 7, NULL, st, err, sizeof(err)), 0);
    ck_assert_ptr_nonnull(
        strstr(st[3].error_reason, "failed to parse field [pages] of type [long]"));
    ck_assert_ptr_nonnull(
        strstr(st[3].error_reason, "caused by illegal_argument_exception: For input string"));
    ck_assert_ptr_nonnull(strstr(st[4].error_reason, "dynamic introduction of [colour]"));
    free(resp);
}
END_TEST

START_TEST(refuses_what_is_not_a_bulk_answer)
{
    size_t len, cut;
    char *resp = slurp("mixed.json", &len), err[256];
    char *refused;
    size_t refused_len;
    struct d2o_bulk_item_status st[8];
    const char *ids[7] = {"a0", "a1", "missing", "bad", "extra", "a2", "a1"};
    const char *wrong[7] = {"a0", "a1", "missing", "OTHER", "extra", "a2", "a1"};

    /* count mismatch, both ways */
    ck_assert_int_eq(d2o_bulk_parse_response(resp, len, 6, NULL, st, err, sizeof(err)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "has 7 items for 6 sent"));
    ck_assert_int_eq(d2o_bulk_parse_response(resp, len, 8, NULL, st, err, sizeof(err)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "has 7 items for 8 sent"));
    /* the _id must match the request item at the same position */
    ck_assert_int_eq(d2o_bulk_parse_response(resp, len, 7, ids, st, err, sizeof(err)), 0);
    ck_assert_int_eq(d2o_bulk_parse_response(resp, len, 7, wrong, st, err, sizeof(err)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "item 3 is for _id \"bad\", sent \"OTHER\""));
    /* every truncation is refused with a reason, never a crash */
    for (cut = 0; cut < len - 1; cut++) {
        err[0] = '\0';
        ck_assert_int_eq(d2o_bulk_parse_response(resp, cut, 7, ids, st, err, sizeof(err)), -EINVAL);
        ck_assert_msg(err[0] != '\0', "no reason at cut %zu", cut);
    }
    /* a trailing newline is fine; trailing garbage is not */
    resp[len - 1] = '\n';
    ck_assert_int_eq(d2o_bulk_parse_response(resp, len, 7, NULL, st, err, sizeof(err)), -EINVAL);
    free(resp);
    {
        static const char nl[] = "{\"items\":[{\"index\":{\"status\":201}}]}\n\n";
        static const char junk[] = "{\"items\":[{\"index\":{\"status\":201}}]}x";

        ck_assert_int_eq(d2o_bulk_parse_response(nl, strlen(nl), 1, NULL, st, err, sizeof(err)), 0);
        ck_assert_int_eq(d2o_bulk_parse_response(junk, strlen(junk), 1, NULL, st, err, sizeof(err)),
                         -EINVAL);
        ck_assert_ptr_nonnull(strstr(err, "after its JSON value"));
    }
    ck_assert_int_eq(d2o_bulk_parse_response("<html>", 6, 1, NULL, st, err, sizeof(err)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "not JSON"));
    ck_assert_int_eq(d2o_bulk_parse_response("", 0, 1, NULL, st, err, sizeof(err)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "empty"));
    ck_assert_int_eq(
        d2o_bulk_parse_response("{\"items\":[{\"index\":{}}]}", 24, 1, NULL, st, err, sizeof(err)),
        -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "item 0 has no status"));
    ck_assert_int_eq(d2o_bulk_parse_response("{\"items\":[{\"index\":{\"status\":7}}]}", 34, 1,
                                             NULL, st, err, sizeof(err)),
                     -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "has status 7"));
    {
        static const char two[] = "{\"items\":[{\"a\":{\"status\":200},\"b\":{}}]}";

        ck_assert_int_eq(d2o_bulk_parse_response(two, strlen(two), 1, NULL, st, err, sizeof(err)),
                         -EINVAL);
        ck_assert_ptr_nonnull(strstr(err, "not {action: result}"));
    }
    /* the whole-request error of a refused body is not a bulk answer */
    refused = slurp("request_refused.json", &refused_len);
    ck_assert_int_eq(d2o_bulk_parse_response(refused, refused_len, 1, NULL, st, err, sizeof(err)),
                     -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "no items array"));
    free(refused);
}
END_TEST

START_TEST(reads_mixed_statuses_in_any_order)
{
    /* errors:true with every outcome the sink tells apart; members in any order, unknown ones
     * (deep too) skipped, escapes decoded */
    static const char resp[] =
        "{\"took\":3,\"errors\":true,\"items\":["
        "{\"index\":{\"status\":201,\"_id\":\"a\\u0030\",\"_shards\":{\"x\":[[{\"y\":[]}]]}}},"
        "{\"index\":{\"error\":{\"caused_by\":{\"reason\":\"cause \\\"q\\\"\","
        "\"type\":\"inner\"},\"reason\":\"[a1]: version conflict\","
        "\"type\":\"version_conflict_engine_exception\",\"index\":\"i\"},"
        "\"_id\":\"a1\",\"status\":409}},"
        "{\"delete\":{\"_id\":\"gone\",\"result\":\"not_found\",\"status\":404}},"
        "{\"index\":{\"status\":429,\"_id\":\"busy\",\"error\":{\"type\":"
        "\"es_rejected_execution_exception\",\"reason\":\"rejected execution\"}}},"
        "{\"update\":{\"status\":503,\"error\":\"unavailable_shards_exception\"}},"
        "{\"index\":{\"status\":400,\"error\":{\"type\":\"mapper_parsing_exception\","
        "\"reason\":null,\"caused_by\":{\"reason\":7}}}},"
        "{\"index\":{\"status\":500,\"error\":{\"type\":3,\"reason\":[\"r\",{\"k\":true}]}}}"
        "],\"Unknown\":{\"items\":7}}";
    static const struct expect want[] = {
        {201, "", D2O_ITEM_DONE},     {409, "version_conflict_engine_exception", D2O_ITEM_STALE},
        {404, "", D2O_ITEM_ABSENT},   {429, "es_rejected_execution_exception", D2O_ITEM_THROTTLE},
        {503, "", D2O_ITEM_THROTTLE}, {400, "mapper_parsing_exception", D2O_ITEM_PERMANENT},
        {500, "3", D2O_ITEM_RETRY},
    };
    const char *ids[7] = {"a0", "a1", "gone", "busy", NULL, NULL, NULL};
    bool deletes[7] = {false, false, true, false, false, false, false};
    struct d2o_bulk_item_status st[7];
    char err[256];
    size_t i;

    ck_assert_msg(d2o_bulk_parse_response(resp, sizeof(resp) - 1, 7, ids, st, err, sizeof(err)) ==
                      0,
                  "%s", err);
    for (i = 0; i < 7; i++) {
        ck_assert_msg(st[i].status == want[i].status, "item %zu: status %d", i, st[i].status);
        ck_assert_str_eq(st[i].error_type, want[i].type);
        ck_assert_msg(d2o_classify_bulk_item(st[i].status,
                                             st[i].error_type[0] ? st[i].error_type : NULL,
                                             deletes[i]) == want[i].cls,
                      "item %zu: class", i);
    }
    /* the cause comes after the reason, whichever came first */
    ck_assert_str_eq(st[1].error_reason, "[a1]: version conflict; caused by inner: cause \"q\"");
    ck_assert_str_eq(st[2].error_reason, "");
    ck_assert_str_eq(st[3].error_reason, "rejected execution");
    /* an error that is a string is the reason */
    ck_assert_str_eq(st[4].error_reason, "unavailable_shards_exception");
    /* null is nothing, a cause without a type says so, other values are their JSON text */
    ck_assert_str_eq(st[5].error_reason, "; caused by ?: 7");
    ck_assert_str_eq(st[6].error_reason, "[\"r\",{\"k\":true}]");
}
END_TEST

START_TEST(refuses_items_out_of_place_or_out_of_range)
{
    struct d2o_bulk_item_status st[2];
    char err[256];
    const char *ids[2] = {"x", "y"};
    static const char huge[] = "{\"items\":[{\"index\":{\"status\":99999999999999999999999}}]}";
    static const char double_status[] = "{\"items\":[{\"index\":{\"status\":200.0}}]}";
    static const char num_id[] = "{\"items\":[{\"index\":{\"status\":200,\"_id\":\"x\"}},"
                                 "{\"index\":{\"_id\":12,\"status\":200}}]}";
    /* a bad item past the count: the count is what is wrong, and nothing is written past n */
    static const char extra[] =
        "{\"items\":[{\"index\":{\"status\":200}},{\"index\":{\"status\":200}},"
        "{\"index\":{\"status\":1,\"error\":{\"type\":\"t\",\"reason\":\"r\"}}},[]]}";
    /* the first bad item is named, not a later one */
    static const char two_bad[] =
        "{\"items\":[{\"index\":{\"status\":200,\"_id\":\"nope\"}},{\"index\":{}}]}";

    ck_assert_int_eq(d2o_bulk_parse_response(huge, strlen(huge), 1, NULL, st, err, sizeof(err)),
                     -EINVAL);
    ck_assert_str_eq(err, "bulk response item 0 has status 9223372036854775807");
    ck_assert_int_eq(d2o_bulk_parse_response(double_status, strlen(double_status), 1, NULL, st, err,
                                             sizeof(err)),
                     -EINVAL);
    ck_assert_str_eq(err, "bulk response item 0 has no status");
    ck_assert_int_eq(d2o_bulk_parse_response(num_id, strlen(num_id), 2, ids, st, err, sizeof(err)),
                     -EINVAL);
    ck_assert_str_eq(err, "bulk response item 1 is for _id \"12\", sent \"y\"");
    ck_assert_int_eq(d2o_bulk_parse_response(extra, strlen(extra), 2, NULL, st, err, sizeof(err)),
                     -EINVAL);
    ck_assert_str_eq(err, "bulk response has 4 items for 2 sent");
    ck_assert_int_eq(
        d2o_bulk_parse_response(two_bad, strlen(two_bad), 2, ids, st, err, sizeof(err)), -EINVAL);
    ck_assert_str_eq(err, "bulk response item 0 is for _id \"nope\", sent \"x\"");
}
END_TEST

/* ---- the sender, over a scripted transport ---- */

#define MAX_REQ 4096
#define MAX_OUT 2048

struct sent {
    char *body; /* a copy of the body, taken when the request started */
    size_t len;
    const struct iovec *parts; /* the request's borrowed pieces, read again at the answer */
    size_t n_parts;
    char url[256];
    char auth[128];
    char ctype[64];
    d2o_http_done_fn cb;
    void *arg;
    bool answered;
};

static struct sent sent[MAX_REQ];
static size_t n_sent;
static int64_t fake_now;
static int start_fails;

struct out {
    int seen;
    struct d2o_bulk_result res;
    char error_class[64];
    char message[512];
};
static struct out outs[MAX_OUT];
static size_t order[MAX_OUT], n_order;

/* The scripted pre-send filter: what it saw last, and which writes it drops. */
static struct {
    bool on;   /* sink_new installs it */
    int calls; /* how many times it ran */
    int fail;  /* fail this many calls */
    size_t n;  /* items of the last call */
    char ids[MAX_OUT][16];
    int64_t versions[MAX_OUT];
    bool dels[MAX_OUT];
    const char *drop_id;          /* drop writes of this document ... */
    int64_t drop_below;           /* ... below this version */
    bool async;                   /* sink_new installs the asynchronous form */
    bool at_once;                 /* the asynchronous form answers before it returns */
    struct d2o_bulk_check *check; /* its last check, unanswered */
    bool drop[MAX_OUT];           /* and its answer */
} flt;

static int fake_filter(void *arg, const struct d2o_bulk_filter_item *items, size_t n, bool *drop)
{
    size_t i;

    ck_assert_ptr_eq(arg, &flt);
    flt.calls++;
    for (i = 0; i < n; i++) {
        ck_assert(!drop[i]);
    }
    if (flt.fail > 0) {
        flt.fail--;
        return -EIO;
    }
    flt.n = n;
    for (i = 0; i < n && i < MAX_OUT; i++) {
        ck_assert_str_eq(items[i].index, "books");
        snprintf(flt.ids[i], sizeof(flt.ids[i]), "%s", items[i].id);
        flt.versions[i] = items[i].version;
        flt.dels[i] = items[i].is_delete;
        drop[i] = !items[i].is_delete && flt.drop_id && strcmp(items[i].id, flt.drop_id) == 0 &&
                  items[i].version < flt.drop_below;
    }
    return 0;
}

/* The asynchronous form: decides as fake_filter, and answers when the test says (or at once). */
static int fake_filter_start(void *arg, const struct d2o_bulk_filter_item *items, size_t n,
                             struct d2o_bulk_check *check)
{
    bool drop[MAX_OUT] = {false};
    int r = fake_filter(arg, items, n, drop);

    if (r < 0 && !flt.at_once) {
        return r;
    }
    if (flt.at_once) {
        d2o_bulk_check_done(check, r, drop);
        return 0;
    }
    ck_assert_ptr_null(flt.check);
    flt.check = check;
    memcpy(flt.drop, drop, sizeof(drop));
    return 0;
}

/* Answers the asynchronous filter's last check. */
static void check_answer(int rc)
{
    struct d2o_bulk_check *check = flt.check;

    ck_assert_ptr_nonnull(check);
    flt.check = NULL;
    d2o_bulk_check_done(check, rc, flt.drop);
}

static int64_t fake_clock(void)
{
    return fake_now;
}

static int fake_start(void *ctx, const struct d2o_http_request *req, d2o_http_done_fn cb, void *arg)
{
    struct sent *s = &sent[n_sent];
    size_t i;

    (void)ctx;
    if (start_fails > 0) {
        start_fails--;
        return -ENOMEM;
    }
    ck_assert_uint_lt(n_sent, MAX_REQ);
    memset(s, 0, sizeof(*s));
    s->body = malloc(req->body_len + 1);
    if (req->n_body_parts > 0) {
        size_t off = 0;

        ck_assert_ptr_null(req->body);
        for (i = 0; i < req->n_body_parts; i++) {
            memcpy(s->body + off, req->body_parts[i].iov_base, req->body_parts[i].iov_len);
            off += req->body_parts[i].iov_len;
        }
        ck_assert_uint_eq(off, req->body_len);
        s->parts = req->body_parts;
        s->n_parts = req->n_body_parts;
    } else {
        memcpy(s->body, req->body, req->body_len);
    }
    s->body[req->body_len] = '\0';
    s->len = req->body_len;
    snprintf(s->url, sizeof(s->url), "%s", req->url);
    for (i = 0; i < req->n_headers; i++) {
        if (strcmp(req->headers[i].name, "Authorization") == 0) {
            snprintf(s->auth, sizeof(s->auth), "%s", req->headers[i].value);
        } else if (strcmp(req->headers[i].name, "Content-Type") == 0) {
            snprintf(s->ctype, sizeof(s->ctype), "%s", req->headers[i].value);
        }
    }
    s->cb = cb;
    s->arg = arg;
    n_sent++;
    return 0;
}

static void on_done(void *cookie, const struct d2o_bulk_result *res, void *arg)
{
    size_t k = (size_t)(uintptr_t)cookie;

    (void)arg;
    ck_assert_uint_lt(k, MAX_OUT);
    outs[k].seen++;
    outs[k].res = *res;
    snprintf(outs[k].error_class, sizeof(outs[k].error_class), "%s",
             res->error_class ? res->error_class : "");
    snprintf(outs[k].message, sizeof(outs[k].message), "%s",
             res->error_message ? res->error_message : "");
    outs[k].res.error_class = NULL;
    outs[k].res.error_message = NULL;
    order[n_order++] = k;
}

static struct d2o_bulk *sink_new_keep(size_t max_items, size_t max_bytes, unsigned max_in_flight,
                                      bool (*keep)(void *, void *))
{
    struct d2o_bulk_opts o = {0};
    struct d2o_bulk *b;
    char err[128];
    size_t i;

    for (i = 0; i < n_sent; i++) {
        free(sent[i].body);
    }
    memset(sent, 0, sizeof(sent));
    memset(outs, 0, sizeof(outs));
    n_sent = 0;
    n_order = 0;
    start_fails = 0;
    fake_now = 1000000;
    d2o_rand_seed_fixed(42);
    o.url = "http://os.example:9200/";
    o.max_items = max_items;
    o.max_bytes = max_bytes;
    o.max_in_flight = max_in_flight;
    o.flush_ms = 500;
    o.retry_base_ms = 100;
    o.retry_cap_ms = 1000;
    o.max_attempts = 3;
    o.done = on_done;
    o.now_ms = fake_clock;
    o.start = fake_start;
    if (flt.on && flt.async) {
        o.filter_start = fake_filter_start;
        o.filter_arg = &flt;
    } else if (flt.on) {
        o.filter = fake_filter;
        o.filter_arg = &flt;
    }
    o.keep = keep;
    b = d2o_bulk_new(NULL, &o, err, sizeof(err));
    ck_assert_msg(b != NULL, "%s", err);
    return b;
}

static struct d2o_bulk *sink_new(size_t max_items, size_t max_bytes, unsigned max_in_flight)
{
    return sink_new_keep(max_items, max_bytes, max_in_flight, NULL);
}

/* Queues an index (or delete) of doc id at version v, with cookie k. */
static void add(struct d2o_bulk *b, size_t k, const char *id, int v, bool del)
{
    struct d2o_bulk_item item = {0};
    char line[256];
    int n;

    if (del) {
        n = snprintf(line, sizeof(line),
                     "{\"delete\":{\"_index\":\"books\",\"_id\":\"%s\",\"version\":%d,"
                     "\"version_type\":\"external\"}}\n",
                     id, v);
    } else {
        /* no final newline: the sink adds it */
        n = snprintf(line, sizeof(line),
                     "{\"index\":{\"_index\":\"books\",\"_id\":\"%s\",\"version\":%d,"
                     "\"version_type\":\"external\"}}\n{\"title\":\"t%d\"}",
                     id, v, v);
    }
    item.ndjson = line;
    item.len = (size_t)n;
    item.is_delete = del;
    item.cookie = (void *)(uintptr_t)k;
    item.version = v;
    ck_assert_int_eq(d2o_bulk_add_item(b, &item), 0);
}

/* Adds n index items with ids <prefix>0 .. <prefix>(n-1) and cookies 0 .. n-1, version 1. */
static void add_numbered(struct d2o_bulk *b, const char *prefix, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        char id[16];

        snprintf(id, sizeof(id), "%s%zu", prefix, i);
        add(b, i, id, 1, false);
    }
}

/* How many items request r carries. */
static size_t items_in(size_t r)
{
    char *ids[MAX_OUT];
    size_t n = body_ids(sent[r].body, sent[r].len, ids, MAX_OUT, NULL);

    free_ids(ids, n);
    return n;
}

static bool carries(size_t r, const char *id)
{
    char *ids[MAX_OUT];
    size_t n = body_ids(sent[r].body, sent[r].len, ids, MAX_OUT, NULL), i;
    bool found = false;

    for (i = 0; i < n; i++) {
        found |= strcmp(ids[i], id) == 0;
    }
    free_ids(ids, n);
    return found;
}

/* The pieces a request borrowed still hold what it started with: until its answer, the bytes
 * of its items are neither freed nor changed (the HTTP layer may read them again to resend). */
static void sent_intact(size_t r)
{
    size_t i, off = 0;

    for (i = 0; i < sent[r].n_parts; i++) {
        ck_assert_uint_le(off + sent[r].parts[i].iov_len, sent[r].len);
        ck_assert(memcmp(sent[r].body + off, sent[r].parts[i].iov_base, sent[r].parts[i].iov_len) ==
                  0);
        off += sent[r].parts[i].iov_len;
    }
}

/* Answers request r with HTTP status and body. */
static void answer_raw(size_t r, long status, const char *body, CURLcode code)
{
    struct d2o_http_response resp;

    ck_assert_uint_lt(r, n_sent);
    ck_assert(!sent[r].answered);
    sent_intact(r);
    memset(&resp, 0, sizeof(resp));
    resp.curl_code = code;
    resp.status = status;
    if (body) {
        ck_assert_int_eq(d2o_buf_puts(&resp.body, body), 0);
    }
    if (code != CURLE_OK) {
        snprintf(resp.errstr, sizeof(resp.errstr), "Connection reset by peer");
    }
    sent[r].answered = true;
    sent[r].cb(&resp, sent[r].arg);
    d2o_buf_free(&resp.body);
}

/*
 * Answers request r item by item: statuses[i] for the i-th item (0 = 201), with an error type
 * for failures (429 -> es_rejected_execution_exception, 400 -> mapper_parsing_exception, 409 ->
 * version_conflict_engine_exception, else "exception").
 */
static void answer_items(size_t r, const int *statuses)
{
    char *ids[MAX_OUT];
    bool dels[MAX_OUT];
    size_t n = body_ids(sent[r].body, sent[r].len, ids, MAX_OUT, dels), i;
    struct d2o_buf out = D2O_BUF_INIT;

    ck_assert_int_eq(d2o_buf_puts(&out, "{\"errors\":true,\"items\":["), 0);
    for (i = 0; i < n; i++) {
        int st = statuses ? statuses[i] : 0;
        const char *type = st == 429   ? "es_rejected_execution_exception"
                           : st == 400 ? "mapper_parsing_exception"
                           : st == 409 ? "version_conflict_engine_exception"
                                       : "exception";

        ck_assert_int_eq(d2o_buf_printf(&out, "%s{\"%s\":{\"_id\":\"%s\",\"status\":%d",
                                        i ? "," : "", dels[i] ? "delete" : "index", ids[i],
                                        st ? st : 201),
                         0);
        if (st >= 300) {
            ck_assert_int_eq(d2o_buf_printf(&out,
                                            ",\"error\":{\"type\":\"%s\",\"reason\":\"why %zu\"}",
                                            type, i),
                             0);
        }
        ck_assert_int_eq(d2o_buf_puts(&out, "}}"), 0);
    }
    ck_assert_int_eq(d2o_buf_puts(&out, "]}"), 0);
    answer_raw(r, 200, out.data, CURLE_OK);
    d2o_buf_free(&out);
    free_ids(ids, n);
}

START_TEST(flushes_on_count_size_and_timer)
{
    struct d2o_bulk *b = sink_new(3, 1 << 20, 2);
    size_t i;

    add_numbered(b, "c", 7);
    ck_assert_uint_eq(d2o_bulk_pending(b), 7);
    d2o_bulk_tick(b, fake_now);
    /* two full requests (the in-flight cap), the 7th item waits */
    ck_assert_uint_eq(n_sent, 2);
    ck_assert_uint_eq(items_in(0), 3);
    ck_assert_uint_eq(items_in(1), 3);
    ck_assert_str_eq(sent[0].url, "http://os.example:9200" D2O_BULK_PATH);
    ck_assert_str_eq(sent[0].ctype, "application/x-ndjson");
    ck_assert_str_eq(sent[0].auth, "");
    ck_assert(sent[0].body[sent[0].len - 1] == '\n');
    ck_assert_ptr_nonnull(strstr(sent[0].body, "{\"title\":\"t1\"}\n{\"index\""));
    ck_assert_int_eq(d2o_bulk_next_ms(b, fake_now), -1); /* waiting for an answer */
    answer_items(0, NULL);
    ck_assert_uint_eq(n_order, 3);
    /* one item left: not due before its flush timer */
    ck_assert_uint_eq(n_sent, 2);
    ck_assert_int_eq(d2o_bulk_next_ms(b, fake_now), 500);
    fake_now += 499;
    d2o_bulk_tick(b, fake_now);
    ck_assert_uint_eq(n_sent, 2);
    fake_now += 1;
    ck_assert_int_eq(d2o_bulk_next_ms(b, fake_now), 0);
    d2o_bulk_tick(b, fake_now);
    ck_assert_uint_eq(n_sent, 3);
    ck_assert_uint_eq(items_in(2), 1);
    answer_items(1, NULL);
    answer_items(2, NULL);
    for (i = 0; i < 7; i++) {
        ck_assert_int_eq(outs[i].seen, 1);
        ck_assert_int_eq(outs[i].res.outcome, D2O_BULK_DONE);
        ck_assert_uint_eq(outs[i].res.attempts, 1);
    }
    ck_assert_uint_eq(d2o_bulk_pending(b), 0);
    ck_assert_int_eq(d2o_bulk_next_ms(b, fake_now), -1);
    d2o_bulk_free(b);
}
END_TEST

/* With no request at OpenSearch, a tenth of a request's items goes out at once
 * instead of waiting for the flush timer: a backlog's GetRecords answers bring a thousand items
 * at a time, and waiting left OpenSearch idle. Fewer items wait for the timer, and so do a
 * tenth's worth while a request is in flight. */
START_TEST(a_tenth_goes_out_at_once_when_nothing_is_in_flight)
{
    struct d2o_bulk *b = sink_new(20, 1 << 20, 2);

    add(b, 0, "q0", 1, false);
    d2o_bulk_tick(b, fake_now);
    ck_assert_uint_eq(n_sent, 0); /* one of 20: waits for the timer */
    ck_assert_int_eq(d2o_bulk_next_ms(b, fake_now), 500);
    add(b, 1, "q1", 1, false);
    ck_assert_int_eq(d2o_bulk_next_ms(b, fake_now), 0);
    d2o_bulk_tick(b, fake_now);
    ck_assert_uint_eq(n_sent, 1);
    ck_assert_uint_eq(items_in(0), 2);
    /* one request in flight: the next tenth waits for its timer */
    add(b, 2, "q2", 1, false);
    add(b, 3, "q3", 1, false);
    d2o_bulk_tick(b, fake_now);
    ck_assert_uint_eq(n_sent, 1);
    ck_assert_int_eq(d2o_bulk_next_ms(b, fake_now), 500);
    /* the answer leaves nothing in flight: the waiting tenth goes out at once */
    answer_items(0, NULL);
    d2o_bulk_tick(b, fake_now);
    ck_assert_uint_eq(n_sent, 2);
    ck_assert_uint_eq(items_in(1), 2);
    answer_items(1, NULL);
    ck_assert_uint_eq(d2o_bulk_pending(b), 0);
    d2o_bulk_free(b);
}
END_TEST

/* At level debug the sink names each request when it goes out (with its items and how long the
 * first one waited for the flush) and when it is answered: how the latency benchmark tells the
 * flush's share of a change's time from the bulk request's. */
START_TEST(the_debug_log_names_each_request_sent_and_answered)
{
    struct d2o_bulk *b = sink_new(3, 1 << 20, 2);
    FILE *log = tmpfile();
    char text[4096];
    size_t n;

    ck_assert_ptr_nonnull(log);
    d2o_log_set_stream(log);
    d2o_log_set_format(D2O_LOG_TEXT);
    d2o_log_set_level(D2O_LOG_DEBUG);
    d2o_log_set_categories(D2O_CAT_SINK);
    add_numbered(b, "c", 4);
    d2o_bulk_tick(b, fake_now); /* a full request at once; the 4th item waits for the timer */
    fake_now += 500;
    d2o_bulk_tick(b, fake_now);
    ck_assert_uint_eq(n_sent, 2);
    answer_items(1, NULL);
    answer_items(0, NULL);
    d2o_log_set_stream(NULL);
    d2o_log_set_level(D2O_LOG_INFO);
    d2o_log_set_categories(0);
    rewind(log);
    n = fread(text, 1, sizeof(text) - 1, log);
    text[n] = '\0';
    fclose(log);
    ck_assert_msg(strstr(text, "bulk_sent: bulk request 1: 3 items, ") &&
                      strstr(text, "the first one waited 0 ms\n"),
                  "%s", text);
    ck_assert_msg(strstr(text, "bulk_sent: bulk request 2: 1 items, ") &&
                      strstr(text, "the first one waited 500 ms\n"),
                  "%s", text);
    /* answered out of order: each answer names its own request */
    ck_assert_msg(strstr(text, "bulk_answered: bulk request 2: HTTP 200 after"), "%s", text);
    ck_assert_msg(strstr(strstr(text, "bulk request 2: HTTP 200"), "bulk_answered: bulk request 1: "
                                                                   "HTTP 200 after"),
                  "%s", text);
    d2o_bulk_free(b);
}
END_TEST

START_TEST(flushes_on_size_and_a_giant_goes_alone)
{
    struct d2o_bulk *b = sink_new(100, 250, 4);
    char big[1024], line[1200];
    int n;

    add(b, 0, "s0", 1, false); /* each small item is about 100 bytes */
    add(b, 1, "s1", 1, false);
    d2o_bulk_tick(b, fake_now);
    ck_assert_uint_eq(n_sent, 0); /* not full yet */
    add(b, 2, "s2", 1, false);
    memset(big, 'x', 500);
    big[500] = '\0';
    n = snprintf(line, sizeof(line),
                 "{\"index\":{\"_index\":\"books\",\"_id\":\"giant\"}}\n{\"t\":\"%s\"}\n", big);
    ck_assert_int_eq(d2o_bulk_add(b, line, (size_t)n, false, (void *)(uintptr_t)3), 0);
    add(b, 4, "s4", 1, false);
    ck_assert_uint_gt(d2o_bulk_pending_bytes(b), 800);
    d2o_bulk_tick(b, fake_now);
    /* bytes over the limit: s0..s1 (s2 would pass 250), then s2, the giant alone, s4 waits */
    ck_assert_uint_ge(n_sent, 2);
    ck_assert_uint_eq(items_in(0), 2);
    ck_assert(carries(0, "s0") && carries(0, "s1"));
    ck_assert(carries(1, "s2") && !carries(1, "giant"));
    ck_assert_uint_eq(n_sent, 3);
    ck_assert_uint_eq(items_in(2), 1);
    ck_assert(carries(2, "giant"));
    ck_assert_uint_le(sent[0].len, 250);
    d2o_bulk_flush(b);
    d2o_bulk_tick(b, fake_now);
    ck_assert_uint_eq(n_sent, 4);
    ck_assert(carries(3, "s4"));
    answer_items(0, NULL);
    answer_items(1, NULL);
    answer_items(2, NULL);
    answer_items(3, NULL);
    ck_assert_uint_eq(n_order, 5);
    d2o_bulk_free(b);
}
END_TEST

START_TEST(only_failed_items_are_sent_again)
{
    struct d2o_bulk *b = sink_new(10, 1 << 20, 2);
    static const int first[] = {0, 429, 409, 0, 503, 400};
    size_t i;

    add(b, 0, "r0", 1, false);
    add(b, 1, "r1", 1, false);
    add(b, 2, "r2", 1, false);
    add(b, 3, "r3", 1, true);
    add(b, 4, "r4", 1, false);
    add(b, 5, "r5", 1, false);
    d2o_bulk_flush(b);
    d2o_bulk_tick(b, fake_now);
    ck_assert_uint_eq(n_sent, 1);
    answer_items(0, first);
    /* done, stale and the mapping error have their outcome; r1 and r4 wait for a retry */
    ck_assert_int_eq(outs[0].res.outcome, D2O_BULK_DONE);
    ck_assert_int_eq(outs[2].res.outcome, D2O_BULK_STALE);
    ck_assert_int_eq(outs[3].res.outcome, D2O_BULK_DONE);
    ck_assert_int_eq(outs[5].res.outcome, D2O_BULK_DLQ);
    ck_assert_str_eq(outs[5].error_class, "mapper_parsing_exception");
    ck_assert_str_eq(outs[5].message, "why 5");
    ck_assert_int_eq(outs[5].res.status, 400);
    ck_assert_int_gt(outs[5].res.first_failed_us, 0);
    ck_assert_int_eq(outs[1].seen + outs[4].seen, 0);
    ck_assert_uint_eq(d2o_bulk_pending(b), 2);
    ck_assert_int_le(d2o_bulk_next_ms(b, fake_now), 100); /* backoff of the first retry */
    fake_now += 100;
    d2o_bulk_tick(b, fake_now);
    ck_assert_uint_eq(n_sent, 2);
    ck_assert_uint_eq(items_in(1), 2);
    ck_assert(carries(1, "r1") && carries(1, "r4"));
    answer_items(1, NULL);
    ck_assert_int_eq(outs[1].res.outcome, D2O_BULK_DONE);
    ck_assert_uint_eq(outs[1].res.attempts, 2);
    ck_assert_int_gt(outs[1].res.first_failed_us, 0);
    ck_assert_int_eq(outs[4].res.outcome, D2O_BULK_DONE);
    for (i = 0; i < 6; i++) {
        ck_assert_int_eq(outs[i].seen, 1);
    }
    ck_assert_uint_eq(d2o_bulk_stats(b)->items_sent, 8);
    ck_assert_uint_eq(d2o_bulk_stats(b)->throttled, 2);
    ck_assert_uint_eq(d2o_bulk_pending(b), 0);
    d2o_bulk_free(b);
}
END_TEST

/* The NDJSON of item id in request r (action and source lines), copied into out. */
static size_t item_bytes(size_t r, const char *id, char *out, size_t size)
{
    char key[64];
    const char *p, *end, *nl;

    snprintf(key, sizeof(key), "\"_id\":\"%s\"", id);
    p = strstr(sent[r].body, key);
    ck_assert_ptr_nonnull(p);
    while (p > sent[r].body && p[-1] != '\n') {
        p--;
    }
    nl = strchr(p, '\n');
    ck_assert_ptr_nonnull(nl);
    end = strncmp(p, "{\"delete\"", 9) == 0 ? nl + 1 : strchr(nl + 1, '\n') + 1;
    ck_assert_uint_lt((size_t)(end - p), size);
    memcpy(out, p, (size_t)(end - p));
    out[end - p] = '\0';
    return (size_t)(end - p);
}

START_TEST(a_request_borrows_its_items_bytes)
{
    struct d2o_bulk *b = sink_new(10, 1 << 20, 2);

    add_numbered(b, "p", 4);
    d2o_bulk_flush(b);
    d2o_bulk_tick(b, fake_now);
    ck_assert_uint_eq(n_sent, 1);
    /* one piece per item, no contiguous copy of the body: a document is held once */
    ck_assert_uint_eq(sent[0].n_parts, 4);
    ck_assert_uint_eq(d2o_bulk_pending_bytes(b), sent[0].len);
    answer_items(0, NULL); /* checks the pieces are intact at the answer */
    ck_assert_uint_eq(n_order, 4);
    d2o_bulk_free(b);
}
END_TEST

START_TEST(a_retry_after_a_partial_failure_resends_the_same_bytes)
{
    struct d2o_bulk *b = sink_new(10, 1 << 20, 2);
    static const int first[] = {0, 429, 0, 503, 0};
    char before[2][512], after[2][512];
    size_t lb[2], la[2];

    add(b, 0, "q0", 1, false);
    add(b, 1, "q1", 7, false);
    add(b, 2, "q2", 1, false);
    add(b, 3, "q3", 9, true);
    add(b, 4, "q4", 1, false);
    d2o_bulk_flush(b);
    d2o_bulk_tick(b, fake_now);
    ck_assert_uint_eq(n_sent, 1);
    lb[0] = item_bytes(0, "q1", before[0], sizeof(before[0]));
    lb[1] = item_bytes(0, "q3", before[1], sizeof(before[1]));
    answer_items(0, first);
    fake_now += 100;
    d2o_bulk_tick(b, fake_now);
    ck_assert_uint_eq(n_sent, 2);
    ck_assert_uint_eq(items_in(1), 2);
    la[0] = item_bytes(1, "q1", after[0], sizeof(after[0]));
    la[1] = item_bytes(1, "q3", after[1], sizeof(after[1]));
    /* the retry carries each failed item's document byte for byte as the first request did */
    ck_assert_uint_eq(la[0], lb[0]);
    ck_assert_str_eq(after[0], before[0]);
    ck_assert_uint_eq(la[1], lb[1]);
    ck_assert_str_eq(after[1], before[1]);
    ck_assert_ptr_nonnull(strstr(after[0], "{\"title\":\"t7\"}\n"));
    ck_assert_uint_eq(sent[1].len, lb[0] + lb[1]);
    answer_items(1, NULL);
    ck_assert_int_eq(outs[1].res.outcome, D2O_BULK_DONE);
    ck_assert_int_eq(outs[3].res.outcome, D2O_BULK_DONE);
    ck_assert_uint_eq(d2o_bulk_pending(b), 0);
    d2o_bulk_free(b);
}
END_TEST

START_TEST(attempts_cap_sends_retry_items_to_the_dlq_but_not_throttled_ones)
{
    struct d2o_bulk *b = sink_new(10, 1 << 20, 2);
    static const int fail[] = {500, 429};
    static const int again[] = {429};
    size_t r = 0;

    add(b, 0, "bad", 1, false);
    add(b, 1, "busy", 1, false);
    d2o_bulk_flush(b);
    for (r = 0; r < 3; r++) {
        fake_now += 1000;
        d2o_bulk_tick(b, fake_now);
        ck_assert_uint_eq(n_sent, r + 1);
        answer_items(r, fail);
    }
    /* max_attempts is 3: the 500 item is done for; the throttled one keeps going */
    ck_assert_int_eq(outs[0].seen, 1);
    ck_assert_int_eq(outs[0].res.outcome, D2O_BULK_DLQ);
    ck_assert_str_eq(outs[0].error_class, "retries_exhausted");
    ck_assert_ptr_nonnull(strstr(outs[0].message, "3 attempts; last: HTTP 500 exception why 0"));
    ck_assert_uint_eq(outs[0].res.attempts, 3);
    ck_assert_int_le(outs[0].res.first_failed_us, outs[0].res.last_failed_us);
    ck_assert_int_eq(outs[1].seen, 0);
    for (; r < 6; r++) {
        fake_now += 1000;
        d2o_bulk_tick(b, fake_now);
        ck_assert_uint_eq(items_in(r), 1);
        answer_items(r, again);
    }
    fake_now += 1000;
    d2o_bulk_tick(b, fake_now);
    answer_items(r, NULL);
    ck_assert_int_eq(outs[1].res.outcome, D2O_BULK_DONE);
    ck_assert_uint_eq(outs[1].res.attempts, 7);
    ck_assert_uint_eq(d2o_bulk_stats(b)->dlq, 1);
    d2o_bulk_free(b);
}
END_TEST

START_TEST(a_413_splits_in_halves_and_a_lone_item_is_too_large)
{
    struct d2o_bulk *b = sink_new(10, 1 << 20, 1);
    size_t i;

    add_numbered(b, "h", 5);
    d2o_bulk_flush(b);
    d2o_bulk_tick(b, fake_now);
    ck_assert_uint_eq(items_in(0), 5);
    answer_raw(0, 413, "{\"error\":\"too large\"}", CURLE_OK);
    ck_assert_uint_eq(d2o_bulk_stats(b)->splits, 1);
    /* the first half (3) went out at once, in order */
    ck_assert_uint_eq(n_sent, 2);
    ck_assert_uint_eq(items_in(1), 3);
    ck_assert(carries(1, "h0") && carries(1, "h2"));
    answer_raw(1, 413, "", CURLE_OK);
    ck_assert_uint_eq(items_in(2), 2); /* h0 h1 */
    answer_items(2, NULL);
    ck_assert_uint_eq(items_in(3), 1); /* h2 alone */
    ck_assert(carries(3, "h2"));
    answer_raw(3, 413, "", CURLE_OK);
    ck_assert_int_eq(outs[2].res.outcome, D2O_BULK_DLQ);
    ck_assert_str_eq(outs[2].error_class, "document_too_large");
    ck_assert_ptr_nonnull(strstr(outs[2].message, "document too large"));
    ck_assert_int_eq(outs[2].res.status, 413);
    /* the second half of the first split */
    ck_assert_uint_eq(items_in(4), 2);
    ck_assert(carries(4, "h3") && carries(4, "h4"));
    answer_items(4, NULL);
    for (i = 0; i < 5; i++) {
        ck_assert_int_eq(outs[i].seen, 1);
        ck_assert_int_eq(outs[i].res.outcome, i == 2 ? D2O_BULK_DLQ : D2O_BULK_DONE);
    }
    ck_assert_uint_eq(d2o_bulk_pending(b), 0);
    d2o_bulk_free(b);
}
END_TEST

START_TEST(whole_request_failures_retry_every_item_and_never_dead_letter)
{
    struct d2o_bulk *b = sink_new(10, 1 << 20, 1);
    size_t r;

    add(b, 0, "w0", 1, false);
    add(b, 1, "w1", 1, true);
    d2o_bulk_flush(b);
    d2o_bulk_tick(b, fake_now);
    for (r = 0; r < 8; r++) {
        ck_assert_uint_eq(n_sent, r + 1);
        ck_assert_uint_eq(items_in(r), 2);
        switch (r % 4) {
        case 0:
            answer_raw(r, 0, NULL, CURLE_RECV_ERROR);
            break;
        case 1:
            answer_raw(r, 503, "{\"error\":\"unavailable\"}", CURLE_OK);
            break;
        case 2:
            answer_raw(r, 429, "", CURLE_OK);
            break;
        default:
            answer_raw(r, 0, NULL, CURLE_OPERATION_TIMEDOUT);
            break;
        }
        ck_assert_int_eq(outs[0].seen + outs[1].seen, 0);
        ck_assert_uint_eq(d2o_bulk_pending(b), 2);
        fake_now += 1000;
        d2o_bulk_tick(b, fake_now);
    }
    answer_items(r, NULL);
    ck_assert_int_eq(outs[0].res.outcome, D2O_BULK_DONE);
    ck_assert_int_eq(outs[1].res.outcome, D2O_BULK_DONE);
    ck_assert_uint_eq(outs[1].res.attempts, 9);
    ck_assert_uint_eq(d2o_bulk_stats(b)->request_failures, 8);
    ck_assert_uint_eq(d2o_bulk_stats(b)->dlq, 0);
    d2o_bulk_free(b);
}
END_TEST

START_TEST(unreadable_and_mismatched_answers_are_retried_up_to_the_cap)
{
    struct d2o_bulk *b = sink_new(10, 1 << 20, 1);

    add(b, 0, "m0", 1, false);
    add(b, 1, "m1", 1, false);
    d2o_bulk_flush(b);
    d2o_bulk_tick(b, fake_now);
    /* one item result for two items */
    answer_raw(0, 200, "{\"errors\":false,\"items\":[{\"index\":{\"_id\":\"m0\",\"status\":201}}]}",
               CURLE_OK);
    ck_assert_int_eq(outs[0].seen + outs[1].seen, 0);
    fake_now += 1000;
    d2o_bulk_tick(b, fake_now);
    ck_assert_uint_eq(items_in(1), 2);
    answer_raw(1, 200, "{\"errors\":false,\"items\":[{\"index\":{\"_id\":\"m0\",\"stat", CURLE_OK);
    fake_now += 1000;
    d2o_bulk_tick(b, fake_now);
    answer_raw(2, 200, "<html>proxy error</html>", CURLE_OK);
    ck_assert_int_eq(outs[0].res.outcome, D2O_BULK_DLQ);
    ck_assert_str_eq(outs[0].error_class, "bad_response");
    ck_assert_ptr_nonnull(strstr(outs[0].message, "not JSON"));
    ck_assert_int_eq(outs[1].res.outcome, D2O_BULK_DLQ);
    ck_assert_uint_eq(d2o_bulk_stats(b)->bad_responses, 3);
    ck_assert_uint_eq(d2o_bulk_pending(b), 0);
    d2o_bulk_free(b);
}
END_TEST

START_TEST(a_refused_body_is_split_down_to_the_bad_item)
{
    struct d2o_bulk *b = sink_new(10, 1 << 20, 1);
    size_t len;
    char *refused = slurp("request_refused.json", &len);

    add(b, 0, "q0", 1, false);
    add(b, 1, "q1", 1, false);
    d2o_bulk_flush(b);
    d2o_bulk_tick(b, fake_now);
    answer_raw(0, 400, refused, CURLE_OK);
    answer_items(1, NULL);
    answer_raw(2, 400, refused, CURLE_OK);
    ck_assert_int_eq(outs[0].res.outcome, D2O_BULK_DONE);
    ck_assert_int_eq(outs[1].res.outcome, D2O_BULK_DLQ);
    ck_assert_str_eq(outs[1].error_class, "request_refused");
    ck_assert_ptr_nonnull(strstr(outs[1].message, "must be terminated by a newline"));
    free(refused);
    d2o_bulk_free(b);
}
END_TEST

START_TEST(one_document_at_a_time_in_arrival_order)
{
    struct d2o_bulk *b = sink_new(10, 1 << 20, 2);
    static const int throttle_first[] = {429, 0};

    add(b, 0, "doc", 1, false);   /* index v1 */
    add(b, 1, "other", 1, false); /* another document */
    add(b, 2, "doc", 2, true);    /* delete v2: must wait for v1 */
    add(b, 3, "doc", 3, false);   /* index v3: must wait for the delete */
    ck_assert_uint_eq(d2o_bulk_pending(b), 4);
    d2o_bulk_flush(b);
    d2o_bulk_tick(b, fake_now);
    ck_assert_uint_eq(n_sent, 1);
    ck_assert_uint_eq(items_in(0), 2);
    ck_assert(carries(0, "doc") && carries(0, "other"));
    answer_items(0, throttle_first); /* v1 throttled; the delete stays behind its retry */
    fake_now += 1000;
    d2o_bulk_tick(b, fake_now);
    ck_assert_uint_eq(n_sent, 2);
    ck_assert_uint_eq(items_in(1), 1);
    ck_assert_ptr_nonnull(strstr(sent[1].body, "\"version\":1,"));
    answer_items(1, NULL);
    /* v1 done: the delete goes out at once, alone for its document */
    ck_assert_uint_eq(n_sent, 3);
    ck_assert_uint_eq(items_in(2), 1);
    ck_assert_ptr_nonnull(strstr(sent[2].body, "{\"delete\""));
    answer_items(2, NULL);
    ck_assert_uint_eq(n_sent, 4);
    ck_assert_ptr_nonnull(strstr(sent[3].body, "\"version\":3,"));
    answer_items(3, NULL);
    ck_assert_uint_eq(n_order, 4);
    ck_assert_uint_eq(order[0], 1);
    ck_assert_uint_eq(order[1], 0);
    ck_assert_uint_eq(order[2], 2);
    ck_assert_uint_eq(order[3], 3);
    ck_assert_uint_eq(d2o_bulk_pending(b), 0);
    d2o_bulk_free(b);
}
END_TEST

/* Cookies k of "shard" shard_of[k]; keep refuses the shards in lost_mask. */
static unsigned shard_of[MAX_OUT], lost_mask;

static bool keep_unlost(void *cookie, void *arg)
{
    (void)arg;
    return !(lost_mask & (1u << shard_of[(size_t)(uintptr_t)cookie]));
}

START_TEST(a_lost_shard_s_items_are_dropped_before_the_next_send)
{
    struct d2o_bulk *k = sink_new_keep(10, 1 << 20, 2, keep_unlost);
    static const int throttle_first[] = {429, 0};
    static const int throttle[] = {429};

    memset(shard_of, 0, sizeof(shard_of));
    lost_mask = 0;
    shard_of[0] = 1; /* shard 1: x v1, then delete x v2 and z */
    shard_of[2] = 1;
    shard_of[3] = 1;
    shard_of[1] = 2; /* shard 2: y, and x v3 (the child of a reshard, say) */
    shard_of[4] = 2;
    add(k, 0, "x", 1, false);
    add(k, 1, "y", 1, false);
    d2o_bulk_flush(k);
    d2o_bulk_tick(k, fake_now);
    ck_assert_uint_eq(n_sent, 1);
    answer_items(0, throttle_first); /* x held in 429s */
    add(k, 2, "x", 2, true);         /* blocked behind x v1 */
    add(k, 3, "z", 1, false);        /* ready */
    add(k, 4, "x", 3, false);        /* another shard's, blocked behind the delete */
    ck_assert_uint_eq(d2o_bulk_pending(k), 4);
    /* shard 1 loses its lease: its retrying, blocked and queued items go before any send */
    lost_mask = 1u << 1;
    d2o_bulk_recheck(k);
    fake_now += 5000;
    d2o_bulk_tick(k, fake_now);
    ck_assert_int_eq(outs[0].res.outcome, D2O_BULK_DROPPED);
    ck_assert_int_eq(outs[2].res.outcome, D2O_BULK_DROPPED);
    ck_assert_int_eq(outs[3].res.outcome, D2O_BULK_DROPPED);
    ck_assert_int_eq(outs[0].seen + outs[2].seen + outs[3].seen, 3);
    ck_assert_uint_eq(d2o_bulk_stats(k)->dropped, 3);
    ck_assert_uint_eq(n_sent, 2);
    ck_assert_uint_eq(items_in(1), 1);
    ck_assert_ptr_nonnull(strstr(sent[1].body, "\"version\":3,"));
    ck_assert_int_eq(outs[4].seen, 0);
    /* shard 2 is lost while x v3 is in flight (no recheck asked): its 429 is not retried */
    lost_mask |= 1u << 2;
    answer_items(1, throttle);
    ck_assert_int_eq(outs[4].seen, 1);
    ck_assert_int_eq(outs[4].res.outcome, D2O_BULK_DROPPED);
    /* and an item of a lost shard never goes into a request, recheck or not */
    shard_of[5] = 2;
    add(k, 5, "w", 1, false);
    fake_now += 5000;
    d2o_bulk_tick(k, fake_now);
    ck_assert_uint_eq(n_sent, 2);
    ck_assert_int_eq(outs[5].res.outcome, D2O_BULK_DROPPED);
    ck_assert_uint_eq(d2o_bulk_pending(k), 0);
    ck_assert_int_eq(outs[1].res.outcome, D2O_BULK_DONE);
    d2o_bulk_free(k);
}
END_TEST

/* ---- the delayed items: due order ---- */

/*
 * Answers request r as the HTTP layer does when the process stops (-ECANCELED): the sink holds its
 * items, due at the clock's time of the answer, here at. That due time is exact (no random
 * backoff), which lets the tests below choose each item's due time.
 */
static void answer_cancelled_at(size_t r, int64_t at)
{
    struct d2o_http_response resp;
    int64_t now = fake_now;

    ck_assert_uint_lt(r, n_sent);
    ck_assert(!sent[r].answered);
    sent_intact(r);
    memset(&resp, 0, sizeof(resp));
    resp.err = -ECANCELED;
    sent[r].answered = true;
    fake_now = at;
    sent[r].cb(&resp, sent[r].arg);
    fake_now = now;
}

/* Each item sent again: its cookie and the clock when it went out. */
static struct {
    size_t k;
    int64_t at;
} resent[MAX_OUT];
static size_t n_resent;

/* The cookie of the item with id <letter><k>. */
static size_t id_cookie(const char *id)
{
    return (size_t)strtoul(id + 1, NULL, 10);
}

/* The cookies of the index items of request r, from their ids, without an assertion per item. */
static size_t cookies_in(size_t r, size_t *ks, size_t max)
{
    const char *p = sent[r].body, *id;
    size_t n = 0;

    while (n < max && (id = strstr(p, "\"_id\":\"")) != NULL) {
        ks[n++] = id_cookie(id + 7);
        p = id + 7;
    }
    return n;
}

/*
 * Records the items of request r (index items only) in resent[] and answers each 201. Asserts
 * once, not per item: every passing Check assertion is a write to the runner, and thousands of
 * them make a test slow on a loaded machine.
 */
static void record_and_answer(size_t r)
{
    struct d2o_buf out = D2O_BUF_INIT;
    const char *p = sent[r].body, *end = sent[r].body + sent[r].len, *id;
    bool ok = d2o_buf_puts(&out, "{\"errors\":false,\"items\":[") == 0;
    size_t n = 0;

    while (ok && p < end && (id = strstr(p, "\"_id\":\"")) != NULL) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));

        id += 7;
        ok = nl && n_resent < MAX_OUT && strchr(id, '"') &&
             d2o_buf_printf(&out, "%s{\"index\":{\"_id\":\"%.*s\",\"status\":201}}", n ? "," : "",
                            (int)(strchr(id, '"') - id), id) == 0;
        if (ok) {
            resent[n_resent].k = id_cookie(id);
            resent[n_resent].at = fake_now;
            n_resent++;
            n++;
            nl = memchr(nl + 1, '\n', (size_t)(end - nl - 1)); /* the document line */
            p = nl ? nl + 1 : end;
        }
    }
    ck_assert_msg(ok && n > 0 && d2o_buf_puts(&out, "]}") == 0, "request %zu: %s", r, sent[r].body);
    answer_raw(r, 200, out.data, CURLE_OK);
    d2o_buf_free(&out);
}

/*
 * Runs the clock from fake_now to until, 1 ms per tick (or, with jump, one tick at until). Every
 * request sent is recorded item by item in resent[] and answered 201 at once.
 */
static void tick_until(struct d2o_bulk *b, int64_t until, bool jump)
{
    if (jump) {
        fake_now = until;
    }
    for (;;) {
        size_t r = n_sent;

        d2o_bulk_tick(b, fake_now);
        for (; r < n_sent; r++) { /* answering may send more: n_sent grows */
            record_and_answer(r);
        }
        if (fake_now >= until) {
            break;
        }
        fake_now++;
    }
}

/*
 * Checks resent[] against the items' due times and the order they were held in (seq): due order,
 * equal due times in the order held, each sent at its due tick (on_time), none twice.
 */
static void check_due_order(const int64_t *due, const size_t *seq, size_t n_items, bool on_time)
{
    char why[256] = "";
    size_t i;

    ck_assert_uint_eq(n_resent, n_items);
    for (i = 0; i < n_resent && !why[0]; i++) {
        size_t k = resent[i].k, p = i > 0 ? resent[i - 1].k : 0;

        if (k >= n_items || outs[k].seen != 1) {
            snprintf(why, sizeof(why), "item %zu: outcome seen %d times", k,
                     k < n_items ? outs[k].seen : -1);
        } else if (on_time && resent[i].at != due[k]) {
            snprintf(why, sizeof(why), "item %zu due at %lld went out at %lld", k,
                     (long long)due[k], (long long)resent[i].at);
        } else if (i > 0 && !(due[p] < due[k] || (due[p] == due[k] && seq[p] < seq[k]))) {
            snprintf(why, sizeof(why),
                     "item %zu (due %lld, held %zu.) went out before item %zu (due %lld, held "
                     "%zu.)",
                     p, (long long)due[p], seq[p], k, (long long)due[k], seq[k]);
        }
    }
    ck_assert_msg(!why[0], "%s", why);
}

/* Queues n numbered items (add_numbered), flushes, and checks that requests requests went out. */
static void send_numbered(struct d2o_bulk *b, const char *prefix, size_t n, size_t requests)
{
    n_resent = 0;
    add_numbered(b, prefix, n);
    d2o_bulk_flush(b);
    d2o_bulk_tick(b, fake_now);
    ck_assert_uint_eq(n_sent, requests);
}

/* Six items, one per request, held with due times 30, 10, 30, 20, 10 and 40 ms ahead (in that
 * order): they go out at those times, in the order 1 4 3 0 2 5; with the clock jumping past all
 * of them, in that order in one tick. */
START_TEST(delayed_items_go_out_in_due_order_equal_times_in_the_order_held)
{
    static const int64_t ahead[] = {30, 10, 30, 20, 10, 40};
    static const size_t want[] = {1, 4, 3, 0, 2, 5};
    int64_t due[6];
    size_t seq[6], i;
    int pass;

    for (pass = 0; pass < 2; pass++) {
        struct d2o_bulk *b = sink_new(1, 1 << 20, 8);
        int64_t t0 = fake_now;

        send_numbered(b, "e", 6, 6);
        for (i = 0; i < 6; i++) {
            ck_assert(carries(i, (char[]){'e', (char)('0' + i), '\0'}));
            due[i] = t0 + ahead[i];
            seq[i] = i;
            answer_cancelled_at(i, due[i]);
        }
        ck_assert_uint_eq(d2o_bulk_pending(b), 6);
        ck_assert_int_eq(d2o_bulk_next_ms(b, t0), 10);
        ck_assert_int_eq(d2o_bulk_next_ms(b, t0 + 10), 0);
        tick_until(b, t0 + 40, pass == 1);
        check_due_order(due, seq, 6, pass == 0);
        for (i = 0; i < 6; i++) {
            ck_assert_uint_eq(resent[i].k, want[i]);
        }
        ck_assert_uint_eq(d2o_bulk_pending(b), 0);
        ck_assert_uint_eq(d2o_bulk_pending_bytes(b), 0);
        ck_assert_int_eq(d2o_bulk_next_ms(b, fake_now), -1);
        d2o_bulk_free(b);
    }
}
END_TEST

/* Items of a lost lease leave the delayed items from anywhere among them: the rest keep their
 * due times and order, the lost ones are dropped before anything is sent. */
START_TEST(delayed_items_removed_from_the_middle_keep_the_rest_in_order)
{
    struct d2o_bulk *b = sink_new_keep(1, 1 << 20, 32, keep_unlost);
    int64_t t0 = fake_now, due[24];
    size_t seq[24], i, n_kept = 0, kept_bytes = 0;
    static int64_t kdue[24];
    static size_t kseq[24], idx[24];

    memset(shard_of, 0, sizeof(shard_of));
    lost_mask = 0;
    send_numbered(b, "r", 24, 24);
    for (i = 0; i < 24; i++) {
        due[i] = t0 + 10 + (int64_t)((i * 5) % 12) * 5; /* pairs share a due time */
        seq[i] = i;
        shard_of[i] = i % 3 == 1 ? 1 : 2;
        answer_cancelled_at(i, due[i]);
        if (shard_of[i] == 2) {
            kept_bytes += sent[i].len;
        }
    }
    ck_assert_uint_eq(d2o_bulk_pending(b), 24);
    lost_mask = 1u << 1;
    d2o_bulk_recheck(b);
    d2o_bulk_tick(b, fake_now); /* nothing due yet: only the drop */
    ck_assert_uint_eq(n_sent, 24);
    for (i = 0; i < 24; i++) {
        ck_assert_int_eq(outs[i].seen, shard_of[i] == 1);
        if (shard_of[i] == 1) {
            ck_assert_int_eq(outs[i].res.outcome, D2O_BULK_DROPPED);
        }
    }
    ck_assert_uint_eq(d2o_bulk_pending(b), 16);
    ck_assert_uint_eq(d2o_bulk_pending_bytes(b), kept_bytes);
    ck_assert_int_eq(d2o_bulk_next_ms(b, t0), 10);
    tick_until(b, t0 + 70, false);
    /* check_due_order over the kept items only, renumbered 0..15 */
    for (i = 0; i < 24; i++) {
        if (shard_of[i] == 2) {
            kdue[n_kept] = due[i];
            kseq[n_kept] = seq[i];
            idx[i] = n_kept++;
        }
    }
    for (i = 0; i < n_resent; i++) {
        ck_assert_uint_eq(shard_of[resent[i].k], 2);
        ck_assert_int_eq(outs[resent[i].k].res.outcome, D2O_BULK_DONE);
        resent[i].k = idx[resent[i].k];
    }
    memset(outs, 0, sizeof(outs));
    for (i = 0; i < n_resent; i++) {
        outs[resent[i].k].seen = 1;
    }
    check_due_order(kdue, kseq, n_kept, true);
    ck_assert_uint_eq(d2o_bulk_pending(b), 0);
    ck_assert_uint_eq(d2o_bulk_pending_bytes(b), 0);
    d2o_bulk_free(b);
}
END_TEST

/* 2000 items held in 250 requests answered in a scrambled order, due within 200 ms (many share a
 * due time): each goes out at its due tick, in due order, equal times in the order held. */
START_TEST(many_delayed_items_go_out_in_due_order)
{
    enum { N = 2000, PER = 8, RQ = N / PER };
    struct d2o_bulk *b = sink_new(PER, 1 << 20, RQ + 8);
    static int64_t due[N];
    static size_t seq[N];
    int64_t t0 = fake_now;
    uint32_t x = 12345;
    size_t i, held = 0;

    n_resent = 0;
    for (i = 0; i < N; i++) {
        char id[16];

        snprintf(id, sizeof(id), "m%zu", i);
        add(b, i, id, 1, false);
    }
    d2o_bulk_flush(b);
    d2o_bulk_tick(b, fake_now);
    ck_assert_uint_eq(n_sent, RQ);
    for (i = 0; i < RQ; i++) {
        size_t r = (i * 97) % RQ, n, j, ks[PER + 1];
        int64_t at;

        x = x * 1103515245u + 12345u;
        at = t0 + 1 + (int64_t)((x >> 8) % 200);
        n = cookies_in(r, ks, PER + 1);
        ck_assert_uint_eq(n, PER);
        for (j = 0; j < n; j++) {
            due[ks[j]] = at;
            seq[ks[j]] = held++;
        }
        answer_cancelled_at(r, at);
    }
    ck_assert_uint_eq(d2o_bulk_pending(b), N);
    tick_until(b, t0 + 201, false);
    check_due_order(due, seq, N, true);
    ck_assert_uint_eq(d2o_bulk_pending(b), 0);
    ck_assert_uint_eq(d2o_bulk_pending_bytes(b), 0);
    ck_assert_uint_eq(d2o_bulk_stats(b)->done, N);
    d2o_bulk_free(b);
}
END_TEST

START_TEST(a_failed_start_keeps_the_items)
{
    struct d2o_bulk *b = sink_new(10, 1 << 20, 2);

    add(b, 0, "f0", 1, false);
    d2o_bulk_flush(b);
    start_fails = 1;
    d2o_bulk_tick(b, fake_now);
    ck_assert_uint_eq(n_sent, 0);
    ck_assert_uint_eq(d2o_bulk_pending(b), 1);
    d2o_bulk_tick(b, fake_now);
    ck_assert_uint_eq(n_sent, 1);
    answer_items(0, NULL);
    ck_assert_int_eq(outs[0].res.outcome, D2O_BULK_DONE);
    ck_assert_uint_eq(outs[0].res.attempts, 1);
    d2o_bulk_free(b);
}
END_TEST

/* The pre-send filter sees each request's items (index, id, version, delete) just before it goes
 * out; what it drops is not sent and finishes stale; the next change of a dropped document goes
 * in a later request, checked again. */
START_TEST(the_pre_send_filter_drops_items_before_they_go_out)
{
    struct d2o_bulk *b;

    memset(&flt, 0, sizeof(flt));
    flt.on = true;
    flt.drop_id = "c";
    flt.drop_below = 5;
    b = sink_new(10, 1 << 20, 2);
    add(b, 0, "a", 5, false);
    add(b, 1, "b", 7, true);
    add(b, 2, "c", 3, false); /* older than c's recorded delete: dropped */
    add(b, 3, "c", 9, false); /* a re-create: waits behind c v3, then goes out */
    d2o_bulk_flush(b);
    d2o_bulk_tick(b, fake_now);
    ck_assert_int_eq(flt.calls, 2);
    ck_assert_uint_eq(n_sent, 2);
    /* the first request: a and b; c v3 never went out */
    ck_assert_uint_eq(items_in(0), 2);
    ck_assert(carries(0, "a") && carries(0, "b") && !carries(0, "c"));
    ck_assert_int_eq(outs[2].seen, 1);
    ck_assert_int_eq(outs[2].res.outcome, D2O_BULK_STALE);
    ck_assert_int_eq(outs[2].res.status, 0);
    ck_assert_uint_eq(outs[2].res.attempts, 0);
    /* the second: c v9, seen by the filter on its own */
    ck_assert_uint_eq(flt.n, 1);
    ck_assert_str_eq(flt.ids[0], "c");
    ck_assert_int_eq(flt.versions[0], 9);
    ck_assert_uint_eq(items_in(1), 1);
    ck_assert_ptr_nonnull(strstr(sent[1].body, "\"version\":9,"));
    answer_items(0, NULL);
    answer_items(1, NULL);
    ck_assert_int_eq(outs[0].res.outcome, D2O_BULK_DONE);
    ck_assert_int_eq(outs[1].res.outcome, D2O_BULK_DONE);
    ck_assert_int_eq(outs[3].res.outcome, D2O_BULK_DONE);
    ck_assert_uint_eq(d2o_bulk_stats(b)->filtered, 1);
    ck_assert_uint_eq(d2o_bulk_stats(b)->stale, 1);
    ck_assert_uint_eq(d2o_bulk_pending(b), 0);
    d2o_bulk_free(b);
    flt.on = false;
}
END_TEST

/* A retry is a new request and is checked again: a write throttled before its document's delete
 * was recorded is dropped when it comes back. */
START_TEST(a_retried_write_is_checked_again)
{
    struct d2o_bulk *b;
    static const int throttled[] = {429};

    memset(&flt, 0, sizeof(flt));
    flt.on = true;
    b = sink_new(10, 1 << 20, 2);
    add(b, 0, "x", 4, false);
    d2o_bulk_flush(b);
    d2o_bulk_tick(b, fake_now);
    ck_assert_uint_eq(n_sent, 1);
    ck_assert_uint_eq(flt.n, 1);
    ck_assert(!flt.dels[0]);
    answer_items(0, throttled);
    flt.drop_id = "x"; /* meanwhile x was deleted at version 6 */
    flt.drop_below = 6;
    fake_now += 5000;
    d2o_bulk_tick(b, fake_now);
    ck_assert_int_eq(flt.calls, 2);
    ck_assert_uint_eq(n_sent, 1); /* not sent again */
    ck_assert_int_eq(outs[0].res.outcome, D2O_BULK_STALE);
    ck_assert_uint_eq(outs[0].res.attempts, 1);
    ck_assert_uint_eq(d2o_bulk_pending(b), 0);
    d2o_bulk_free(b);
    flt.on = false;
}
END_TEST

/* The asynchronous filter: the items wait for its answer in a request slot, and the request goes
 * out with it; what it drops finishes stale, and the dropped document's next change is checked
 * on its own. A check still on its way when the sink is freed frees its items with the answer. */
START_TEST(the_asynchronous_filter_sends_with_its_answer)
{
    struct d2o_bulk *b;

    memset(&flt, 0, sizeof(flt));
    flt.on = true;
    flt.async = true;
    flt.drop_id = "c";
    flt.drop_below = 5;
    b = sink_new(10, 1 << 20, 2);
    add(b, 0, "a", 5, false);
    add(b, 1, "b", 7, true);
    add(b, 2, "c", 3, false);
    add(b, 3, "c", 9, false);
    d2o_bulk_flush(b);
    d2o_bulk_tick(b, fake_now);
    ck_assert_int_eq(flt.calls, 1);
    ck_assert_uint_eq(flt.n, 3);
    ck_assert_uint_eq(n_sent, 0); /* waiting for the answer */
    ck_assert_uint_eq(d2o_bulk_pending(b), 4);
    d2o_bulk_tick(b, fake_now);
    ck_assert_int_eq(flt.calls, 1); /* c v9 waits behind c v3 */
    fake_now += 10;
    check_answer(0);
    ck_assert_uint_eq(n_sent, 1);
    ck_assert_uint_eq(items_in(0), 2);
    ck_assert(carries(0, "a") && carries(0, "b") && !carries(0, "c"));
    ck_assert_int_eq(outs[2].res.outcome, D2O_BULK_STALE);
    /* c v9: its own check, then its request */
    ck_assert_int_eq(flt.calls, 2);
    ck_assert_uint_eq(flt.n, 1);
    ck_assert_int_eq(flt.versions[0], 9);
    check_answer(0);
    ck_assert_uint_eq(n_sent, 2);
    ck_assert_ptr_nonnull(strstr(sent[1].body, "\"version\":9,"));
    answer_items(0, NULL);
    answer_items(1, NULL);
    ck_assert_int_eq(outs[0].res.outcome, D2O_BULK_DONE);
    ck_assert_int_eq(outs[3].res.outcome, D2O_BULK_DONE);
    ck_assert_uint_eq(d2o_bulk_stats(b)->filtered, 1);
    ck_assert_uint_eq(d2o_bulk_pending(b), 0);
    /* a failed answer holds the items with backoff; one that comes at once works too */
    add(b, 4, "d", 1, false);
    d2o_bulk_flush(b);
    d2o_bulk_tick(b, fake_now);
    check_answer(-EIO);
    ck_assert_uint_eq(n_sent, 2);
    ck_assert_uint_eq(d2o_bulk_stats(b)->filter_failures, 1);
    ck_assert_int_gt(d2o_bulk_next_ms(b, fake_now), 0);
    flt.at_once = true;
    fake_now += 1000;
    d2o_bulk_tick(b, fake_now);
    ck_assert_uint_eq(n_sent, 3);
    answer_items(2, NULL);
    ck_assert_int_eq(outs[4].res.outcome, D2O_BULK_DONE);
    /* freed with a check on its way */
    flt.at_once = false;
    add(b, 5, "e", 1, false);
    d2o_bulk_flush(b);
    d2o_bulk_tick(b, fake_now);
    ck_assert_ptr_nonnull(flt.check);
    d2o_bulk_free(b);
    check_answer(0);
    ck_assert_int_eq(outs[5].seen, 0);
    flt.on = false;
}
END_TEST

/* A filter that cannot decide sends nothing: the items wait with backoff and go out checked. */
START_TEST(a_failed_filter_holds_the_items)
{
    struct d2o_bulk *b;

    memset(&flt, 0, sizeof(flt));
    flt.on = true;
    flt.fail = 1;
    b = sink_new(10, 1 << 20, 2);
    add(b, 0, "p", 1, false);
    add(b, 1, "q", 2, true);
    d2o_bulk_flush(b);
    d2o_bulk_tick(b, fake_now);
    ck_assert_int_eq(flt.calls, 1);
    ck_assert_uint_eq(n_sent, 0);
    ck_assert_uint_eq(d2o_bulk_pending(b), 2);
    ck_assert_uint_eq(d2o_bulk_stats(b)->filter_failures, 1);
    ck_assert_int_gt(d2o_bulk_next_ms(b, fake_now), 0);
    d2o_bulk_tick(b, fake_now); /* still backing off */
    ck_assert_int_eq(flt.calls, 1);
    fake_now += 1000;
    d2o_bulk_tick(b, fake_now);
    ck_assert_int_eq(flt.calls, 2);
    ck_assert_uint_eq(n_sent, 1);
    ck_assert_uint_eq(items_in(0), 2);
    ck_assert(flt.dels[1] && flt.versions[1] == 2);
    answer_items(0, NULL);
    ck_assert_int_eq(outs[0].res.outcome, D2O_BULK_DONE);
    ck_assert_int_eq(outs[1].res.outcome, D2O_BULK_DONE);
    d2o_bulk_free(b);
    flt.on = false;
}
END_TEST

START_TEST(basic_auth_header_and_free_with_pending_items)
{
    struct d2o_bulk_opts o = {0};
    struct d2o_bulk *b;
    char err[128];

    b = sink_new(10, 1 << 20, 1);
    d2o_bulk_free(b);
    o.url = "http://h:1";
    o.basic_user = "ddb2os";
    o.basic_password = "open sesame";
    o.done = on_done;
    o.now_ms = fake_clock;
    o.start = fake_start;
    b = d2o_bulk_new(NULL, &o, err, sizeof(err));
    ck_assert_ptr_nonnull(b);
    add(b, 0, "x", 1, false);
    add(b, 1, "x", 2, false); /* blocked behind the first */
    add(b, 2, "y", 2, false);
    d2o_bulk_flush(b);
    d2o_bulk_tick(b, fake_now);
    ck_assert_str_eq(sent[0].auth, "Basic ZGRiMm9zOm9wZW4gc2VzYW1l");
    ck_assert_str_eq(sent[0].url, "http://h:1" D2O_BULK_PATH);
    /* freed with one request in flight and one item blocked: the answer after the free only
     * releases memory (checked under valgrind/ASan) and calls no callback */
    d2o_bulk_free(b);
    answer_items(0, NULL);
    ck_assert_uint_eq(n_order, 0);
    o.done = NULL;
    ck_assert_ptr_null(d2o_bulk_new(NULL, &o, err, sizeof(err)));
    ck_assert_ptr_nonnull(strstr(err, "callback"));
}
END_TEST

START_TEST(outcome_names)
{
    ck_assert_str_eq(d2o_bulk_outcome_name(D2O_BULK_DONE), "done");
    ck_assert_str_eq(d2o_bulk_outcome_name(D2O_BULK_DLQ), "dlq");
    ck_assert_str_eq(d2o_bulk_outcome_name(D2O_BULK_DROPPED), "dropped");
    ck_assert_str_eq(d2o_bulk_outcome_name((enum d2o_bulk_outcome)99), "?");
}
END_TEST

Suite *d2o_test_suite(void)
{
    Suite *s = suite_create("bulk");
    TCase *pure = tcase_create("pure");
    TCase *sender = tcase_create("sender");

    /* Check's default is 4 s of wall time; a loaded machine or a sanitizer build needs more,
     * and the suite's meson timeout (60 s) still bounds it. */
    tcase_set_timeout(pure, 60);
    tcase_set_timeout(sender, 60);

    tcase_add_test(pure, batch_count_honours_size_and_count);
    tcase_add_test(pure, action_key_reads_index_and_id);
    tcase_add_test(pure, parses_captured_responses);
    tcase_add_test(pure, error_reason_keeps_the_cause);
    tcase_add_test(pure, refuses_what_is_not_a_bulk_answer);
    tcase_add_test(pure, reads_mixed_statuses_in_any_order);
    tcase_add_test(pure, refuses_items_out_of_place_or_out_of_range);
    tcase_add_test(pure, outcome_names);
    tcase_add_test(sender, flushes_on_count_size_and_timer);
    tcase_add_test(sender, a_tenth_goes_out_at_once_when_nothing_is_in_flight);
    tcase_add_test(sender, the_debug_log_names_each_request_sent_and_answered);
    tcase_add_test(sender, flushes_on_size_and_a_giant_goes_alone);
    tcase_add_test(sender, only_failed_items_are_sent_again);
    tcase_add_test(sender, attempts_cap_sends_retry_items_to_the_dlq_but_not_throttled_ones);
    tcase_add_test(sender, a_413_splits_in_halves_and_a_lone_item_is_too_large);
    tcase_add_test(sender, whole_request_failures_retry_every_item_and_never_dead_letter);
    tcase_add_test(sender, unreadable_and_mismatched_answers_are_retried_up_to_the_cap);
    tcase_add_test(sender, a_refused_body_is_split_down_to_the_bad_item);
    tcase_add_test(sender, a_request_borrows_its_items_bytes);
    tcase_add_test(sender, a_retry_after_a_partial_failure_resends_the_same_bytes);
    tcase_add_test(sender, one_document_at_a_time_in_arrival_order);
    tcase_add_test(sender, a_failed_start_keeps_the_items);
    tcase_add_test(sender, the_pre_send_filter_drops_items_before_they_go_out);
    tcase_add_test(sender, a_retried_write_is_checked_again);
    tcase_add_test(sender, a_failed_filter_holds_the_items);
    tcase_add_test(sender, the_asynchronous_filter_sends_with_its_answer);
    tcase_add_test(sender, a_lost_shard_s_items_are_dropped_before_the_next_send);
    tcase_add_test(sender, delayed_items_go_out_in_due_order_equal_times_in_the_order_held);
    tcase_add_test(sender, delayed_items_removed_from_the_middle_keep_the_rest_in_order);
    tcase_add_test(sender, many_delayed_items_go_out_in_due_order);
    tcase_add_test(sender, basic_auth_header_and_free_with_pending_items);
    suite_add_tcase(s, pure);
    suite_add_tcase(s, sender);
    return s;
}
