/*
 * Records/s into the real OpenSearch through the bulk sink, against a trivial loader that posts
 * the very same bulk bodies (same batch size, same two requests in flight, keep-alive, no
 * response parsing) in the same run. Each run writes N ~1 KB documents into a fresh index with
 * 0 replicas and refresh disabled; runs alternate, and the best of each is reported, with this
 * process's CPU per document in the sink (building requests, reading answers).
 *
 * With a PostgreSQL conninfo, each round also runs the sink with the delete store's pre-send check
 * (delete_mode = delete), in a schema of its own that first holds 1 000 000 recorded deletes of
 * other documents: every request then costs one d2o_deletes_check() statement.
 *
 * usage: bench_bulk [OPENSEARCH_URL [DOCS [ROUNDS [PG_CONNINFO]]]]
 *        (default $D2O_TEST_OPENSEARCH, 100000, 2, no check)
 *
 * With --parse, no OpenSearch: the response parser alone, CALLS times over one answer of ITEMS
 * items as OpenSearch writes it under the sink's filter_path (one in ten a version conflict), in
 * CPU time per item.
 *
 * usage: bench_bulk --parse [CALLS [ITEMS]]   (default 200 1000)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench_pg.h"
#include "d2o/buf.h"
#include "d2o/bulk.h"
#include "d2o/clock.h"
#include "d2o/conf.h"
#include "d2o/deletes.h"
#include "d2o/document.h"
#include "d2o/http.h"
#include "d2o/pg.h"
#include "d2o/record.h"
#include "d2o/util.h"

#define BATCH_ITEMS 1000

static struct d2o_http *http;
static const char *base;
static size_t done_count;
static int64_t *versions;  /* each item's external version */
static double sink_cpu_us; /* this process's CPU per document in the last run_sink */

/* CPU time of this process (the sink's side only), microseconds. */
static int64_t cpu_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static long call(const char *method, const char *path, const char *body)
{
    char url[512];
    struct d2o_http_header h = {"Content-Type", "application/json"};
    struct d2o_http_request req = {0};
    struct d2o_http_response resp = {0};
    long status;

    snprintf(url, sizeof(url), "%s%s", base, path);
    req.method = method;
    req.url = url;
    req.headers = &h;
    req.n_headers = 1;
    req.body = body;
    req.body_len = body ? strlen(body) : 0;
    if (d2o_http_request_sync(http, &req, &resp) != 0 || resp.curl_code != CURLE_OK) {
        fprintf(stderr, "bench_bulk: %s %s failed: %s\n", method, url, resp.errstr);
        exit(1);
    }
    status = resp.status;
    d2o_http_response_free(&resp);
    return status;
}

static void fresh_index(const char *name)
{
    char path[128];

    snprintf(path, sizeof(path), "/%s", name);
    (void)call("DELETE", path, NULL);
    if (call("PUT", path,
             "{\"settings\":{\"number_of_replicas\":0,\"refresh_interval\":\"-1\"}}") != 200) {
        fprintf(stderr, "bench_bulk: cannot create %s\n", name);
        exit(1);
    }
}

static char **build_items(const char *index, size_t n, size_t *lens)
{
    struct d2o_config conf;
    char **items = calloc(n, sizeof(*items)), rec[4096], err[256];
    size_t i;

    if (d2o_conf_init(&conf) < 0) {
        exit(1);
    }
    for (i = 0; i < n; i++) {
        struct d2o_record r;
        struct d2o_doc_op op;
        int len = snprintf(
            rec, sizeof(rec),
            "{\"eventName\":\"INSERT\",\"tableName\":\"%s\",\"dynamodb\":{"
            "\"ApproximateCreationDateTime\":%zu,\"ApproximateCreationDateTimePrecision\":"
            "\"MICROSECOND\",\"Keys\":{\"id\":{\"S\":\"doc-%zu\"}},\"NewImage\":{\"id\":{\"S\":"
            "\"doc-%zu\"},\"title\":{\"S\":\"The Dispossessed, copy "
            "%zu\"},\"pages\":{\"N\":\"%zu\"},"
            "\"tags\":{\"SS\":[\"sf\",\"anarchism\",\"hainish\"]},\"in_print\":{\"BOOL\":true},"
            "\"summary\":{\"S\":\"Shevek, a brilliant physicist, decides to take action: he will "
            "seek answers, question the unquestioned, and attempt to tear down the walls of "
            "hatred that have kept his world of anarchists isolated from the rest of the "
            "universe. To do this he must go to the mother planet, Urras, and there he finds a "
            "world of rich abundance and rich poverty, of war and of peace, of capitalists and "
            "of communists, of states and of anarchists, of walls.\"},\"publisher\":{\"M\":{"
            "\"name\":{\"S\":\"Harper & Row\"},\"year\":{\"N\":\"1974\"}}},\"editions\":{\"L\":"
            "[{\"N\":\"1974\"},{\"N\":\"1994\"},{\"N\":\"2003\"}]}}}}",
            index, (size_t)1732500000000000ULL + i, i, i, i, 100 + i % 900);

        if (d2o_record_parse(rec, (size_t)len, &r, err, sizeof(err)) < 0 ||
            d2o_doc_build(&r, &conf, &op, err, sizeof(err)) < 0) {
            fprintf(stderr, "bench_bulk: %s\n", err);
            exit(1);
        }
        lens[i] = op.ndjson.len;
        versions[i] = op.version;
        items[i] = d2o_buf_steal(&op.ndjson);
        d2o_doc_op_free(&op);
        d2o_record_free(&r);
    }
    d2o_conf_free(&conf);
    return items;
}

static void on_item(void *cookie, const struct d2o_bulk_result *res, void *arg)
{
    (void)cookie;
    (void)arg;
    if (res->outcome != D2O_BULK_DONE) {
        fprintf(stderr, "bench_bulk: an item ended as %d (%s)\n", res->outcome,
                res->error_class ? res->error_class : "");
        exit(1);
    }
    done_count++;
}

/* The sink; with dc, every request passes the delete store's check first. */
static double run_sink(char **items, size_t *lens, size_t n, struct d2o_deletes_ctx *dc)
{
    struct d2o_bulk_opts o = {0};
    struct d2o_bulk *b;
    char err[256];
    int64_t t0, c0;
    size_t i;

    o.url = base;
    o.max_items = BATCH_ITEMS;
    o.max_in_flight = 2;
    o.flush_ms = 1000;
    o.done = on_item;
    if (dc) {
        o.filter = d2o_deletes_filter;
        o.filter_arg = dc;
    }
    b = d2o_bulk_new(http, &o, err, sizeof(err));
    if (!b) {
        fprintf(stderr, "bench_bulk: %s\n", err);
        exit(1);
    }
    done_count = 0;
    t0 = d2o_mono_us();
    c0 = cpu_us();
    for (i = 0; i < n; i++) {
        struct d2o_bulk_item it = {0};

        it.ndjson = items[i];
        it.len = lens[i];
        it.version = versions[i];
        if (d2o_bulk_add_item(b, &it) < 0) {
            exit(1);
        }
        if (d2o_bulk_pending(b) >= 4 * BATCH_ITEMS) {
            d2o_bulk_tick(b, d2o_mono_ms());
            if (d2o_http_run(http, NULL, 0, 100) < 0) {
                exit(1);
            }
        }
    }
    if (d2o_bulk_drain(b, 600000) < 0 || done_count != n || (dc && dc->err[0])) {
        fprintf(stderr, "bench_bulk: sink did not finish (%zu of %zu) %s\n", done_count, n,
                dc ? dc->err : "");
        exit(1);
    }
    d2o_bulk_free(b);
    sink_cpu_us = (double)(cpu_us() - c0) / (double)n;
    return (double)n / ((double)(d2o_mono_us() - t0) / 1e6);
}

/* A connection into a fresh, migrated schema holding 1 000 000 deletes of other documents. */
static PGconn *deletes_store(const char *base_conninfo)
{
    PGconn *c = bench_pg_schema(base_conninfo, "bench_bulk");

    bench_pg_sql(c, "INSERT INTO deletes (application, index_name, doc_id, version) SELECT"
                    " 'bench', 'other', 'doc-' || g, g FROM generate_series(1, 1000000) g");
    bench_pg_sql(c, "ANALYZE deletes");
    return c;
}

static unsigned loader_in_flight;

static void on_loaded(struct d2o_http_response *resp, void *arg)
{
    (void)arg;
    if (resp->curl_code != CURLE_OK || resp->status != 200) {
        fprintf(stderr, "bench_bulk: loader request failed: %ld %s\n", resp->status, resp->errstr);
        exit(1);
    }
    loader_in_flight--;
}

static double run_loader(char **items, size_t *lens, size_t n, const char *url)
{
    struct d2o_http_header h = {"Content-Type", "application/x-ndjson"};
    size_t nbodies = (n + BATCH_ITEMS - 1) / BATCH_ITEMS, i, k, next = 0;
    struct d2o_buf *bodies = calloc(nbodies, sizeof(*bodies));
    int64_t t0;

    /* The same bodies the sink sends: consecutive items, BATCH_ITEMS at a time. */
    for (i = 0; i < nbodies; i++) {
        for (k = i * BATCH_ITEMS; k < n && k < (i + 1) * BATCH_ITEMS; k++) {
            if (d2o_buf_append(&bodies[i], items[k], lens[k]) < 0) {
                exit(1);
            }
        }
    }
    t0 = d2o_mono_us();
    while (next < nbodies || loader_in_flight > 0) {
        while (next < nbodies && loader_in_flight < 2) {
            struct d2o_http_request req = {0};

            req.method = "POST";
            req.url = url;
            req.headers = &h;
            req.n_headers = 1;
            req.body = bodies[next].data;
            req.body_len = bodies[next].len;
            if (d2o_http_start(http, &req, on_loaded, NULL, NULL) < 0) {
                exit(1);
            }
            loader_in_flight++;
            next++;
        }
        if (d2o_http_run(http, NULL, 0, 100) < 0) {
            exit(1);
        }
    }
    for (i = 0; i < nbodies; i++) {
        d2o_buf_free(&bodies[i]);
    }
    free(bodies);
    return (double)n / ((double)(d2o_mono_us() - t0) / 1e6);
}

static int parse_only(int argc, char **argv)
{
    long calls = argc > 2 ? strtol(argv[2], NULL, 10) : 200;
    long n = argc > 3 ? strtol(argv[3], NULL, 10) : 1000, i;
    struct d2o_buf body = D2O_BUF_INIT;
    struct d2o_bulk_item_status *st;
    char **ids, err[256];
    int64_t c0, best = INT64_MAX, total = 0;
    int r;

    if (calls <= 0 || n <= 0 || n > 100000) {
        fprintf(stderr, "usage: %s --parse [CALLS [ITEMS]]\n", argv[0]);
        return 2;
    }
    st = calloc((size_t)n, sizeof(*st));
    ids = calloc((size_t)n, sizeof(*ids));
    r = st && ids ? d2o_buf_puts(&body, "{\"errors\":true,\"items\":[") : -1;
    for (i = 0; i < n && r == 0; i++) {
        r = asprintf(&ids[i], "doc-%ld", i) < 0 ? -1 : 0;
        if (r == 0 && i % 10 == 9) {
            r = d2o_buf_printf(&body,
                               "%s{\"index\":{\"_id\":\"%s\",\"status\":409,\"error\":{\"type\":"
                               "\"version_conflict_engine_exception\",\"reason\":\"[%s]: version "
                               "conflict, current version [12] is higher or equal to the one "
                               "provided [7]\",\"index\":\"bench\",\"shard\":\"0\","
                               "\"index_uuid\":\"ytAXsI_LTjSW6gSEXdwfFQ\"}}}",
                               i ? "," : "", ids[i], ids[i]);
        } else if (r == 0) {
            r = d2o_buf_printf(&body, "%s{\"index\":{\"_id\":\"%s\",\"status\":201}}", i ? "," : "",
                               ids[i]);
        }
    }
    if (r == 0) {
        r = d2o_buf_puts(&body, "]}");
    }
    if (r < 0) {
        fprintf(stderr, "bench_bulk: out of memory\n");
        return 1;
    }
    for (i = 0; i < calls; i++) {
        c0 = cpu_us();
        if (d2o_bulk_parse_response(body.data, body.len, (size_t)n, (const char *const *)ids, st,
                                    err, sizeof(err)) != 0) {
            fprintf(stderr, "bench_bulk: %s\n", err);
            return 1;
        }
        c0 = cpu_us() - c0;
        total += c0;
        best = c0 < best ? c0 : best;
    }
    printf("parse: %ld answers of %ld items (%zu bytes each)\n", calls, n, body.len);
    printf("parse: %.3f us per item (best answer), %.3f us per item (mean)\n",
           (double)best / (double)n, (double)total / (double)calls / (double)n);
    for (i = 0; i < n; i++) {
        free(ids[i]);
    }
    free(ids);
    free(st);
    d2o_buf_free(&body);
    return 0;
}

int main(int argc, char **argv)
{
    size_t n = 100000, i, *lens;
    int64_t v;
    int rounds = 2, r;
    char **items, err[256], url[512], index[64];
    double best_sink = 0, best_loader = 0, best_checked = 0, best_cpu = 0;
    struct d2o_deletes_ctx dc = {0};

    if (argc > 1 && strcmp(argv[1], "--parse") == 0) {
        return parse_only(argc, argv);
    }
    base = argc > 1 ? argv[1] : getenv("D2O_TEST_OPENSEARCH");
    if (!base || (argc > 2 && d2o_parse_i64(argv[2], 1, 10000000, &v) < 0)) {
        fprintf(stderr, "usage: bench_bulk [OPENSEARCH_URL [DOCS [ROUNDS]]]\n");
        return 2;
    }
    if (argc > 2) {
        n = (size_t)v;
    }
    if (argc > 3 && d2o_parse_i64(argv[3], 1, 20, &v) == 0) {
        rounds = (int)v;
    }
    if (d2o_http_global_init() < 0) {
        return 1;
    }
    http = d2o_http_new(NULL, err, sizeof(err));
    if (!http) {
        fprintf(stderr, "bench_bulk: %s\n", err);
        return 1;
    }
    snprintf(index, sizeof(index), "bench-bulk-%d", (int)getpid());
    if (argc > 4) {
        dc.pg = deletes_store(argv[4]);
        dc.application = "bench";
    }
    lens = calloc(n, sizeof(*lens));
    versions = calloc(n, sizeof(*versions));
    items = build_items(index, n, lens);
    snprintf(url, sizeof(url), "%s/_bulk", base);
    for (r = 0; r < rounds; r++) {
        double s, l, c = 0, sink_cpu;

        fresh_index(index);
        s = run_sink(items, lens, n, NULL);
        sink_cpu = sink_cpu_us;
        best_cpu = r == 0 || sink_cpu < best_cpu ? sink_cpu : best_cpu;
        if (dc.pg) {
            uint64_t checks = dc.checks;

            fresh_index(index);
            c = run_sink(items, lens, n, &dc);
            printf("round %d: sink with the delete check %.0f docs/s (%llu checks)\n", r + 1, c,
                   (unsigned long long)(dc.checks - checks));
            best_checked = c > best_checked ? c : best_checked;
        }
        fresh_index(index);
        l = run_loader(items, lens, n, url);
        printf("round %d: sink %.0f docs/s (client CPU %.2f us per doc), trivial loader %.0f "
               "docs/s\n",
               r + 1, s, sink_cpu, l);
        best_sink = s > best_sink ? s : best_sink;
        best_loader = l > best_loader ? l : best_loader;
    }
    {
        char path[128];

        snprintf(path, sizeof(path), "/%s", index);
        (void)call("DELETE", path, NULL);
    }
    printf("best: sink %.0f docs/s, loader %.0f docs/s, sink/loader %.0f%%; sink client CPU %.2f "
           "us per doc\n",
           best_sink, best_loader, 100.0 * best_sink / best_loader, best_cpu);
    if (dc.pg) {
        printf("best: sink with the delete check %.0f docs/s, %.0f%% of the sink, %.0f%% of the "
               "loader\n",
               best_checked, 100.0 * best_checked / best_sink, 100.0 * best_checked / best_loader);
        PQfinish(dc.pg);
        bench_pg_drop(argv[4], "bench_bulk");
    }
    for (i = 0; i < n; i++) {
        free(items[i]);
    }
    free(items);
    free(lens);
    free(versions);
    d2o_http_free(http);
    return 0;
}
