/*
 * The bulk sink against the real OpenSearch, directly and through tests/proxy/faultproxy.py:
 * writes land in order, stale and duplicate writes are harmless, mapping conflicts reach the
 * dead-letter outcome with OpenSearch's error text, and injected 429s, 503s, an outage and 413s
 * are retried or split until every item has its outcome, with no duplicate effects.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <json-c/json.h>

#include "d2o/bulk.h"
#include "d2o/clock.h"
#include "d2o/conf.h"
#include "d2o/dlq.h"
#include "d2o/document.h"
#include "d2o/http.h"
#include "d2o/pg.h"
#include "d2o/record.h"
#include "d2o/sigv4.h"
#include "d2o/util.h"
#include "d2o_config.h"
#include "d2o_test.h"

#define MAX_ITEMS 2000

struct outcome {
    int seen;
    enum d2o_bulk_outcome outcome;
    char error_class[96];
    char message[512];
};

static struct outcome outcomes[MAX_ITEMS];
static char last_record[8192]; /* the raw change record add_change() built last */
static char index_name[64];
static const char *os_url;

static void on_done(void *cookie, const struct d2o_bulk_result *res, void *arg)
{
    struct outcome *o = &outcomes[(size_t)(uintptr_t)cookie];

    (void)arg;
    o->seen++;
    o->outcome = res->outcome;
    snprintf(o->error_class, sizeof(o->error_class), "%s",
             res->error_class ? res->error_class : "");
    snprintf(o->message, sizeof(o->message), "%s", res->error_message ? res->error_message : "");
}

static const char *need_env(const char *name)
{
    const char *v = getenv(name);

    if (!v || !*v) {
        ck_abort_msg("%s is not set: run scripts/services start and export scripts/services env",
                     name);
    }
    return v;
}

static long request(struct d2o_http *h, const char *method, const char *path, const char *body,
                    struct json_object **out)
{
    char url[512];
    struct d2o_http_header hdr = {"Content-Type", "application/json"};
    struct d2o_http_request req = {0};
    struct d2o_http_response resp = {0};
    long status;

    snprintf(url, sizeof(url), "%s%s", os_url, path);
    req.method = method;
    req.url = url;
    req.headers = &hdr;
    req.n_headers = 1;
    req.body = body;
    req.body_len = body ? strlen(body) : 0;
    ck_assert_int_eq(d2o_http_request_sync(h, &req, &resp), 0);
    ck_assert_msg(resp.curl_code == CURLE_OK, "%s %s: %s", method, url, resp.errstr);
    status = resp.status;
    if (out) {
        *out = json_tokener_parse(resp.body.data ? resp.body.data : "null");
    }
    d2o_http_response_free(&resp);
    return status;
}

static struct d2o_http *http_new(void)
{
    char err[256];
    struct d2o_http *h = d2o_http_new(NULL, err, sizeof(err));

    ck_assert_msg(h != NULL, "%s", err);
    return h;
}

static void fresh_index(struct d2o_http *h, const char *mapping)
{
    char body[512];

    snprintf(index_name, sizeof(index_name), "bulk-it-%d-%ld", (int)getpid(), random() % 100000);
    snprintf(body, sizeof(body),
             "{\"settings\":{\"number_of_replicas\":0,\"refresh_interval\":\"1s\"}%s%s}",
             mapping ? ",\"mappings\":" : "", mapping ? mapping : "");
    {
        char path[128];

        snprintf(path, sizeof(path), "/%s", index_name);
        ck_assert_int_eq(request(h, "PUT", path, body, NULL), 200);
    }
    memset(outcomes, 0, sizeof(outcomes));
}

static void drop_index(struct d2o_http *h)
{
    char path[128];

    snprintf(path, sizeof(path), "/%s", index_name);
    (void)request(h, "DELETE", path, NULL, NULL);
}

/* Builds the bulk item of one change record through the real transform and queues it. */
static void add_change(struct d2o_bulk *b, struct d2o_config *conf, size_t cookie,
                       const char *event, const char *id, int64_t micros, const char *title,
                       const char *pages_av)
{
    char rec_json[8192];
    struct d2o_record rec;
    struct d2o_doc_op op;
    char err[256];

    if (strcmp(event, "REMOVE") == 0) {
        snprintf(rec_json, sizeof(rec_json),
                 "{\"eventName\":\"REMOVE\",\"tableName\":\"%s\",\"dynamodb\":{"
                 "\"ApproximateCreationDateTime\":%lld,\"ApproximateCreationDateTimePrecision\":"
                 "\"MICROSECOND\",\"Keys\":{\"id\":{\"S\":\"%s\"}}}}",
                 index_name, (long long)micros, id);
    } else {
        snprintf(rec_json, sizeof(rec_json),
                 "{\"eventName\":\"%s\",\"tableName\":\"%s\",\"dynamodb\":{"
                 "\"ApproximateCreationDateTime\":%lld,\"ApproximateCreationDateTimePrecision\":"
                 "\"MICROSECOND\",\"Keys\":{\"id\":{\"S\":\"%s\"}},\"NewImage\":{\"id\":{\"S\":"
                 "\"%s\"},\"title\":{\"S\":\"%s\"},\"pages\":%s}}}",
                 event, index_name, (long long)micros, id, id, title, pages_av);
    }
    snprintf(last_record, sizeof(last_record), "%s", rec_json);
    ck_assert_msg(d2o_record_parse(rec_json, strlen(rec_json), &rec, err, sizeof(err)) == 0, "%s",
                  err);
    ck_assert_msg(d2o_doc_build(&rec, conf, &op, err, sizeof(err)) == 0, "%s", err);
    ck_assert_int_eq(d2o_bulk_add(b, op.ndjson.data, op.ndjson.len, op.action == D2O_DOC_DELETE,
                                  (void *)(uintptr_t)cookie),
                     0);
    d2o_doc_op_free(&op);
    d2o_record_free(&rec);
}

static struct d2o_bulk *sink(struct d2o_http *h, const char *url, size_t max_items)
{
    struct d2o_bulk_opts o = {0};
    char err[256];
    struct d2o_bulk *b;

    o.url = url;
    o.max_items = max_items;
    o.flush_ms = 50;
    o.retry_base_ms = 20;
    o.retry_cap_ms = 300;
    o.max_attempts = 5;
    o.done = on_done;
    b = d2o_bulk_new(h, &o, err, sizeof(err));
    ck_assert_msg(b != NULL, "%s", err);
    return b;
}

/* GETs one document: returns its _version (-1 if absent) and copies its title. */
static long long doc_version(struct d2o_http *h, const char *id, char *title, size_t n)
{
    char path[256];
    struct json_object *o = NULL, *v, *src;
    long long version = -1;
    long status;

    snprintf(path, sizeof(path), "/%s/_doc/%s", index_name, id);
    status = request(h, "GET", path, NULL, &o);
    if (status == 200 && json_object_object_get_ex(o, "_version", &v)) {
        version = json_object_get_int64(v);
        if (title && json_object_object_get_ex(o, "_source", &src) &&
            json_object_object_get_ex(src, "title", &v)) {
            snprintf(title, n, "%s", json_object_get_string(v));
        }
    }
    json_object_put(o);
    return version;
}

static long long count_docs(struct d2o_http *h)
{
    char path[128];
    struct json_object *o = NULL, *v;
    long long n = -1;

    snprintf(path, sizeof(path), "/%s/_refresh", index_name);
    (void)request(h, "POST", path, NULL, NULL);
    snprintf(path, sizeof(path), "/%s/_count", index_name);
    ck_assert_int_eq(request(h, "GET", path, NULL, &o), 200);
    if (json_object_object_get_ex(o, "count", &v)) {
        n = json_object_get_int64(v);
    }
    json_object_put(o);
    return n;
}

/* Every document of the index is <prefix><i> for some i < n, at version base + i. With
 * count_docs() == n this says each of the n writes landed exactly once. */
static void check_all_versions(struct d2o_http *h, const char *prefix, long long base, size_t n)
{
    char path[256];
    struct json_object *o = NULL, *hits, *arr, *hit, *v;
    size_t i, len, plen = strlen(prefix);
    const char *id;
    char *end;
    unsigned long k;

    snprintf(path, sizeof(path), "/%s/_search?size=%zu&version=true&_source=false", index_name,
             n + 1);
    ck_assert_int_eq(request(h, "GET", path, NULL, &o), 200);
    ck_assert(json_object_object_get_ex(o, "hits", &hits));
    ck_assert(json_object_object_get_ex(hits, "hits", &arr));
    len = json_object_array_length(arr);
    ck_assert_uint_eq(len, n);
    for (i = 0; i < len; i++) {
        hit = json_object_array_get_idx(arr, i);
        ck_assert(json_object_object_get_ex(hit, "_id", &v));
        id = json_object_get_string(v);
        ck_assert_msg(strncmp(id, prefix, plen) == 0, "unexpected document %s", id);
        k = strtoul(id + plen, &end, 10);
        ck_assert_msg(*end == '\0' && k < n, "unexpected document %s", id);
        ck_assert(json_object_object_get_ex(hit, "_version", &v));
        ck_assert_msg(json_object_get_int64(v) == base + (long long)k, "%s at version %lld", id,
                      (long long)json_object_get_int64(v));
    }
    json_object_put(o);
}

START_TEST(writes_land_in_order_and_stale_ones_are_harmless)
{
    struct d2o_http *h = http_new();
    struct d2o_config conf;
    struct d2o_bulk *b;
    char id[32], title[64];
    size_t i, cookie = 0;

    os_url = need_env("D2O_TEST_OPENSEARCH");
    ck_assert_int_eq(d2o_conf_init(&conf), 0);
    fresh_index(h, NULL);
    b = sink(h, os_url, 100);
    for (i = 0; i < 200; i++) {
        snprintf(id, sizeof(id), "d%zu", i);
        add_change(b, &conf, cookie++, "INSERT", id, 1000000 + (int64_t)i, "v1", "{\"N\":\"1\"}");
    }
    ck_assert_int_eq(d2o_bulk_drain(b, 30000), 0);
    for (i = 0; i < 200; i++) {
        snprintf(id, sizeof(id), "d%zu", i);
        if (i % 2 == 0) {
            add_change(b, &conf, cookie++, "MODIFY", id, 2000000 + (int64_t)i, "v2",
                       "{\"N\":\"2\"}");
        }
        if (i % 4 == 0) {
            add_change(b, &conf, cookie++, "REMOVE", id, 3000000 + (int64_t)i, NULL, NULL);
        }
    }
    ck_assert_int_eq(d2o_bulk_drain(b, 30000), 0);
    /* Late and duplicate writes: an older MODIFY for d1 (already at v1 with a newer version? no:
     * d1 holds version 1000001, send 999), a duplicate of d2's MODIFY, and a delete of a document
     * that never existed. */
    add_change(b, &conf, 1000, "MODIFY", "d1", 999, "old", "{\"N\":\"0\"}");
    add_change(b, &conf, 1001, "MODIFY", "d2", 2000002, "v2", "{\"N\":\"2\"}");
    add_change(b, &conf, 1002, "REMOVE", "never-there", 5, NULL, NULL);
    add_change(b, &conf, 1003, "MODIFY", "d4", 2500000, "resurrected?", "{\"N\":\"9\"}");
    ck_assert_int_eq(d2o_bulk_drain(b, 30000), 0);
    /* Every item has exactly one outcome. A MODIFY may be overtaken by the REMOVE of the same
     * document in a concurrent request: then it is stale, and the final state is still right. */
    for (i = 0; i < cookie; i++) {
        ck_assert_int_eq(outcomes[i].seen, 1);
        ck_assert_msg(outcomes[i].outcome == D2O_BULK_DONE || outcomes[i].outcome == D2O_BULK_STALE,
                      "item %zu: outcome %d", i, outcomes[i].outcome);
        if (i < 200) {
            ck_assert_int_eq(outcomes[i].outcome, D2O_BULK_DONE);
        }
    }
    ck_assert_int_eq(outcomes[1000].outcome, D2O_BULK_STALE);
    ck_assert_int_eq(outcomes[1001].outcome, D2O_BULK_STALE);
    ck_assert_int_eq(outcomes[1002].outcome, D2O_BULK_ABSENT);
    /* d4 was deleted at version 3000004; a write at 2500000 must not bring it back. */
    ck_assert_int_eq(outcomes[1003].outcome, D2O_BULK_STALE);
    ck_assert_int_eq(doc_version(h, "d1", title, sizeof(title)), 1000001);
    ck_assert_str_eq(title, "v1");
    ck_assert_int_eq(doc_version(h, "d2", title, sizeof(title)), 2000002);
    ck_assert_str_eq(title, "v2");
    ck_assert_int_eq(doc_version(h, "d4", NULL, 0), -1);
    ck_assert_int_eq(count_docs(h), 150);
    d2o_bulk_free(b);
    drop_index(h);
    d2o_conf_free(&conf);
    d2o_http_free(h);
}
END_TEST

/*
 * Stores the failed record the way the worker does: a DLQ row and the checkpoint past it in one
 * fenced transaction, in a schema of this run; then reads the row back.
 */
static void store_in_dlq(const char *raw, const char *error_class, const char *message)
{
    const char *base = need_env("D2O_TEST_PG");
    char schema[64], conninfo[1024], q[256], err[512];
    struct d2o_dlq_row row = {0};
    struct d2o_checkpoint cp = {"app", "books-stream", "shardId-000000000000", "w1", 1, "200"};
    PGconn *c;
    PGresult *r;

    snprintf(schema, sizeof(schema), "d2o_bulk_%d", (int)getpid());
    c = d2o_pg_connect(base, "ddb2os-test", err, sizeof(err));
    ck_assert_msg(c != NULL, "%s", err);
    snprintf(q, sizeof(q), "DROP SCHEMA IF EXISTS %s CASCADE; CREATE SCHEMA %s", schema, schema);
    PQclear(PQexec(c, q));
    PQfinish(c);
    snprintf(conninfo, sizeof(conninfo), "%s options=-csearch_path=%s", base, schema);
    c = d2o_pg_connect(conninfo, "ddb2os-test", err, sizeof(err));
    ck_assert_msg(c != NULL, "%s", err);
    ck_assert_msg(d2o_pg_migrate(c, NULL, NULL, err, sizeof(err)) == 0, "%s", err);
    PQclear(PQexec(c, "INSERT INTO leases (application, stream, shard_id, owner, lease_counter,"
                      " expires_at, checkpoint) VALUES ('app', 'books-stream',"
                      " 'shardId-000000000000', 'w1', 1, now() + interval '10 s', '100')"));
    row.sequence_number = "150";
    row.table_name = index_name;
    row.index_name = index_name;
    row.doc_id = "bad";
    row.version = 11;
    row.raw = raw;
    row.raw_len = strlen(raw);
    row.error_class = error_class;
    row.http_status = 400;
    row.error_message = message;
    row.attempts = 1;
    ck_assert_msg(d2o_dlq_commit(c, &cp, &row, 1, err, sizeof(err)) == 0, "%s", err);
    r = PQexec(c, "SELECT error_class, error_message, convert_from(raw_record, 'UTF8'), state"
                  " FROM dlq");
    ck_assert_int_eq(PQntuples(r), 1);
    ck_assert_str_eq(PQgetvalue(r, 0, 0), "mapper_parsing_exception");
    ck_assert_msg(strstr(PQgetvalue(r, 0, 1), "failed to parse") != NULL, "%s",
                  PQgetvalue(r, 0, 1));
    ck_assert_str_eq(PQgetvalue(r, 0, 2), raw);
    ck_assert_str_eq(PQgetvalue(r, 0, 3), "pending");
    PQclear(r);
    snprintf(q, sizeof(q), "DROP SCHEMA %s CASCADE", schema);
    PQfinish(c);
    c = d2o_pg_connect(base, "ddb2os-test", err, sizeof(err));
    PQclear(PQexec(c, q));
    PQfinish(c);
}

START_TEST(mapping_conflict_lands_in_the_dead_letter_queue)
{
    char bad_record[8192];
    struct d2o_http *h = http_new();
    struct d2o_config conf;
    struct d2o_bulk *b;

    os_url = need_env("D2O_TEST_OPENSEARCH");
    ck_assert_int_eq(d2o_conf_init(&conf), 0);
    fresh_index(h, "{\"properties\":{\"pages\":{\"type\":\"long\"}}}");
    b = sink(h, os_url, 100);
    add_change(b, &conf, 0, "INSERT", "ok", 10, "fine", "{\"N\":\"12\"}");
    add_change(b, &conf, 1, "INSERT", "bad", 11, "broken", "{\"S\":\"many\"}");
    snprintf(bad_record, sizeof(bad_record), "%s", last_record);
    add_change(b, &conf, 2, "INSERT", "ok2", 12, "fine", "{\"N\":\"13\"}");
    ck_assert_int_eq(d2o_bulk_drain(b, 30000), 0);
    ck_assert_int_eq(outcomes[0].outcome, D2O_BULK_DONE);
    ck_assert_int_eq(outcomes[2].outcome, D2O_BULK_DONE);
    ck_assert_int_eq(outcomes[1].outcome, D2O_BULK_DLQ);
    ck_assert_str_eq(outcomes[1].error_class, "mapper_parsing_exception");
    ck_assert_msg(strstr(outcomes[1].message, "pages") != NULL, "%s", outcomes[1].message);
    ck_assert_int_eq(d2o_bulk_stats(b)->requests, 1); /* the good items were not sent again */
    store_in_dlq(bad_record, outcomes[1].error_class, outcomes[1].message);
    d2o_bulk_free(b);
    drop_index(h);
    d2o_conf_free(&conf);
    d2o_http_free(h);
}
END_TEST

struct proxy {
    pid_t pid;
    int out_fd; /* the proxy's stdout, open until it stops: a closed pipe would kill it */
    char url[64];
};

static struct proxy proxy_start(const char *faults)
{
    struct proxy p;
    int fds[2];
    char buf[32] = "";
    ssize_t n;

    ck_assert_int_eq(pipe(fds), 0);
    p.pid = d2o_test_fork();
    if (p.pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        execlp("python3", "python3", D2O_SOURCE_ROOT "/tests/proxy/faultproxy.py", "--upstream",
               os_url, "--max-seconds", "120", "--faults", faults, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    n = read(fds[0], buf, sizeof(buf) - 1);
    p.out_fd = fds[0];
    ck_assert_msg(n > 0, "fault proxy did not start");
    buf[n] = '\0';
    {
        int64_t port = 0;

        ck_assert_int_eq(d2o_parse_i64n(buf, strcspn(buf, "\n"), 1, 65535, &port), 0);
        snprintf(p.url, sizeof(p.url), "http://127.0.0.1:%d", (int)port);
    }
    return p;
}

static void proxy_stop(struct proxy *p)
{
    kill(p->pid, SIGTERM);
    waitpid(p->pid, NULL, 0);
    close(p->out_fd);
}

/* A string counter of the proxy's /__stats, copied into out. */
static void proxy_stat_str(struct d2o_http *h, struct proxy *p, const char *key, char *out,
                           size_t n)
{
    const char *saved = os_url;
    struct json_object *o = NULL, *v;

    os_url = p->url;
    ck_assert_int_eq(request(h, "GET", "/__stats", NULL, &o), 200);
    os_url = saved;
    out[0] = '\0';
    if (json_object_object_get_ex(o, key, &v)) {
        snprintf(out, n, "%s", json_object_get_string(v));
    }
    json_object_put(o);
}

static long long proxy_stat(struct d2o_http *h, struct proxy *p, const char *key)
{
    const char *saved = os_url;
    struct json_object *o = NULL, *v;
    long long n = -1;

    os_url = p->url;
    ck_assert_int_eq(request(h, "GET", "/__stats", NULL, &o), 200);
    os_url = saved;
    if (json_object_object_get_ex(o, key, &v)) {
        n = json_object_get_int64(v);
    }
    json_object_put(o);
    return n;
}

static void write_many_through(struct d2o_http *h, struct proxy *p, size_t n_docs)
{
    struct d2o_config conf;
    struct d2o_bulk *b = sink(h, p->url, 64);
    char id[32], title[64];
    size_t i;

    ck_assert_int_eq(d2o_conf_init(&conf), 0);
    for (i = 0; i < n_docs; i++) {
        snprintf(id, sizeof(id), "p%zu", i);
        add_change(b, &conf, i, "INSERT", id, 7000000 + (int64_t)i, "t", "{\"N\":\"3\"}");
    }
    ck_assert_int_eq(d2o_bulk_drain(b, 60000), 0);
    for (i = 0; i < n_docs; i++) {
        ck_assert_int_eq(outcomes[i].seen, 1);
        ck_assert_msg(outcomes[i].outcome == D2O_BULK_DONE, "item %zu: %d %s %s", i,
                      outcomes[i].outcome, outcomes[i].error_class, outcomes[i].message);
    }
    ck_assert_int_eq(d2o_bulk_stats(b)->dlq, 0);
    /* No duplicate effects: every document holds exactly the version sent, once. */
    ck_assert_int_eq(count_docs(h), (long long)n_docs);
    for (i = 0; i < n_docs; i += 37) {
        snprintf(id, sizeof(id), "p%zu", i);
        ck_assert_int_eq(doc_version(h, id, title, sizeof(title)), 7000000 + (long long)i);
    }
    d2o_bulk_free(b);
    d2o_conf_free(&conf);
}

START_TEST(injected_429s_and_503s_are_retried_until_done)
{
    struct d2o_http *h = http_new();
    struct proxy p;

    os_url = need_env("D2O_TEST_OPENSEARCH");
    fresh_index(h, NULL);
    p = proxy_start("{\"item_429_every\":4,\"request_status\":503,\"request_count\":3}");
    write_many_through(h, &p, 500);
    ck_assert_int_gt(proxy_stat(h, &p, "injected_items"), 100);
    ck_assert_int_eq(proxy_stat(h, &p, "injected_status"), 3);
    proxy_stop(&p);
    drop_index(h);
    d2o_http_free(h);
}
END_TEST

START_TEST(an_outage_loses_nothing)
{
    struct d2o_http *h = http_new();
    struct proxy p;

    os_url = need_env("D2O_TEST_OPENSEARCH");
    fresh_index(h, NULL);
    p = proxy_start("{\"down_seconds\":2,\"reset_count\":0}");
    write_many_through(h, &p, 300);
    ck_assert_int_gt(proxy_stat(h, &p, "resets"), 0);
    proxy_stop(&p);
    drop_index(h);
    d2o_http_free(h);
}
END_TEST

START_TEST(too_large_requests_split_and_a_lone_giant_is_dead_lettered)
{
    struct d2o_http *h = http_new();
    struct d2o_config conf;
    struct d2o_bulk *b;
    struct proxy p;
    char big[3200];
    size_t i;

    os_url = need_env("D2O_TEST_OPENSEARCH");
    ck_assert_int_eq(d2o_conf_init(&conf), 0);
    fresh_index(h, NULL);
    p = proxy_start("{\"max_body\":3000}");
    b = sink(h, p.url, 64);
    for (i = 0; i < 40; i++) {
        char id[16];

        snprintf(id, sizeof(id), "s%zu", i);
        add_change(b, &conf, i, "INSERT", id, 100 + (int64_t)i, "split me", "{\"N\":\"1\"}");
    }
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    add_change(b, &conf, 40, "INSERT", "giant", 500, big, "{\"N\":\"1\"}");
    ck_assert_int_eq(d2o_bulk_drain(b, 30000), 0);
    for (i = 0; i < 40; i++) {
        ck_assert_int_eq(outcomes[i].outcome, D2O_BULK_DONE);
    }
    ck_assert_int_eq(outcomes[40].outcome, D2O_BULK_DLQ);
    ck_assert_str_eq(outcomes[40].error_class, "document_too_large");
    ck_assert_int_gt(d2o_bulk_stats(b)->splits, 0);
    ck_assert_int_eq(count_docs(h), 40);
    d2o_bulk_free(b);
    proxy_stop(&p);
    drop_index(h);
    d2o_conf_free(&conf);
    d2o_http_free(h);
}
END_TEST

/*
 * A real OpenSearch restart in the middle of a stream: the node started by this checkout's
 * scripts/services is restarted with its data kept (D2O_KEEP_DATA=1) while the sink keeps
 * writing; every item must end done, exactly once.
 */
START_TEST(an_opensearch_restart_mid_stream_loses_nothing)
{
    struct d2o_http *h = http_new();
    struct d2o_config conf;
    struct d2o_bulk *b;
    char id[32];
    pid_t kid;
    int status = -1;
    size_t i, added = 0;
    int64_t deadline;

    os_url = need_env("D2O_TEST_OPENSEARCH");
    ck_assert_int_eq(d2o_conf_init(&conf), 0);
    fresh_index(h, NULL);
    b = sink(h, os_url, 50);
    for (; added < 300; added++) {
        snprintf(id, sizeof(id), "r%zu", added);
        add_change(b, &conf, added, "INSERT", id, 9000000 + (int64_t)added, "t", "{\"N\":\"1\"}");
    }
    ck_assert_int_eq(d2o_bulk_drain(b, 30000), 0);
    kid = d2o_test_fork();
    if (kid == 0) {
        int fd = open("/dev/null", O_WRONLY);

        dup2(fd, 1);
        dup2(fd, 2);
        setenv("D2O_KEEP_DATA", "1", 1);
        execlp("bash", "bash", D2O_SOURCE_ROOT "/scripts/services", "restart", "opensearch",
               (char *)NULL);
        _exit(127);
    }
    /* Keep writing while the node goes down and comes back. */
    deadline = d2o_mono_ms() + 90000;
    while (d2o_mono_ms() < deadline) {
        pid_t done = waitpid(kid, &status, WNOHANG);

        if (added < 900) {
            snprintf(id, sizeof(id), "r%zu", added);
            add_change(b, &conf, added, "INSERT", id, 9000000 + (int64_t)added, "t",
                       "{\"N\":\"1\"}");
            added++;
        }
        d2o_bulk_tick(b, d2o_mono_ms());
        ck_assert_int_ge(d2o_http_run(h, NULL, 0, 10), 0);
        if (done == kid) {
            break;
        }
    }
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "scripts/services restart opensearch failed (status %d): this test needs the "
                  "services started by this checkout's scripts/services",
                  status);
    ck_assert_int_eq(d2o_bulk_drain(b, 90000), 0);
    ck_assert_int_gt(d2o_bulk_stats(b)->request_failures, 0); /* the outage was seen */
    /* Every item is acknowledged exactly once. A write the node applied but whose answer the
     * restart cut off is sent again and answered 409: stale, which is success by design. */
    for (i = 0; i < added; i++) {
        ck_assert_int_eq(outcomes[i].seen, 1);
        ck_assert_msg(outcomes[i].outcome == D2O_BULK_DONE || outcomes[i].outcome == D2O_BULK_STALE,
                      "item %zu: %d %s", i, outcomes[i].outcome, outcomes[i].message);
    }
    /* Nothing was lost, whichever way it was acknowledged: every document is there, at the
     * version its item carried. */
    ck_assert_int_eq(count_docs(h), (long long)added);
    check_all_versions(h, "r", 9000000, added);
    d2o_bulk_free(b);
    drop_index(h);
    d2o_conf_free(&conf);
    d2o_http_free(h);
}
END_TEST

/* Basic authentication, and SigV4 for OpenSearch Service (es) and Serverless (aoss). */
START_TEST(requests_authenticate_as_configured)
{
    struct d2o_http *h = http_new();
    struct d2o_config conf;
    struct proxy p;
    struct d2o_aws_creds creds = {"AKIDSINK", "sink-secret-key", "sink-session-token"};
    static const char *const services[] = {"es", "aoss"};
    char got[512], sha[128], err[256];
    int i;

    os_url = need_env("D2O_TEST_OPENSEARCH");
    ck_assert_int_eq(d2o_conf_init(&conf), 0);
    fresh_index(h, NULL);
    p = proxy_start("{}");
    {
        struct d2o_bulk_opts o = {0};
        struct d2o_bulk *b;

        o.url = p.url;
        o.basic_user = "ddb2os";
        o.basic_password = "open sesame";
        o.done = on_done;
        b = d2o_bulk_new(h, &o, err, sizeof(err));
        ck_assert_ptr_nonnull(b);
        add_change(b, &conf, 0, "INSERT", "a1", 1, "t", "{\"N\":\"1\"}");
        ck_assert_int_eq(d2o_bulk_drain(b, 30000), 0);
        ck_assert_int_eq(outcomes[0].outcome, D2O_BULK_DONE);
        proxy_stat_str(h, &p, "last_authorization", got, sizeof(got));
        /* base64("ddb2os:open sesame") */
        ck_assert_str_eq(got, "Basic ZGRiMm9zOm9wZW4gc2VzYW1l");
        d2o_bulk_free(b);
    }
    for (i = 0; i < 2; i++) {
        struct d2o_bulk_opts o = {0};
        struct d2o_sigv4_signer *signer = d2o_sigv4_signer_new("eu-west-1", services[i]);
        struct d2o_bulk *b;
        char want[128];

        o.url = p.url;
        o.signer = signer;
        o.creds = &creds;
        o.sign_content_sha256 = i == 1;
        o.done = on_done;
        b = d2o_bulk_new(h, &o, err, sizeof(err));
        ck_assert_ptr_nonnull(b);
        add_change(b, &conf, 1 + (size_t)i, "INSERT", "a2", 2 + i, "t", "{\"N\":\"1\"}");
        ck_assert_int_eq(d2o_bulk_drain(b, 30000), 0);
        proxy_stat_str(h, &p, "last_authorization", got, sizeof(got));
        proxy_stat_str(h, &p, "last_content_sha256", sha, sizeof(sha));
        snprintf(want, sizeof(want), "/eu-west-1/%s/aws4_request", services[i]);
        ck_assert_msg(strncmp(got, "AWS4-HMAC-SHA256 Credential=AKIDSINK/", 37) == 0 &&
                          strstr(got, want) != NULL,
                      "%s", got);
        ck_assert_ptr_nonnull(strstr(got, "x-amz-security-token"));
        if (i == 1) {
            ck_assert_uint_eq(strlen(sha), 64);
            ck_assert_ptr_nonnull(strstr(got, "x-amz-content-sha256"));
        } else {
            ck_assert_str_eq(sha, "");
        }
        d2o_bulk_free(b);
        d2o_sigv4_signer_free(signer);
    }
    proxy_stop(&p);
    drop_index(h);
    d2o_conf_free(&conf);
    d2o_http_free(h);
}
END_TEST

Suite *d2o_test_suite(void)
{
    Suite *s = suite_create("bulk_opensearch");
    TCase *tc = tcase_create("bulk");

    srandom((unsigned)getpid());
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, writes_land_in_order_and_stale_ones_are_harmless);
    tcase_add_test(tc, mapping_conflict_lands_in_the_dead_letter_queue);
    tcase_add_test(tc, injected_429s_and_503s_are_retried_until_done);
    tcase_add_test(tc, an_outage_loses_nothing);
    tcase_add_test(tc, too_large_requests_split_and_a_lone_giant_is_dead_lettered);
    tcase_add_test(tc, requests_authenticate_as_configured);
    tcase_add_test(tc, an_opensearch_restart_mid_stream_loses_nothing);
    suite_add_tcase(s, tc);
    return s;
}
