/*
 * The shared metrics block, its Prometheus text, readiness, EMF lines and the HTTP endpoint
 * (libmicrohttpd on loopback, driven from a forked child while the test asks with libcurl).
 */
#include <curl/curl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "d2o/buf.h"
#include "d2o/clock.h"
#include "d2o/metrics.h"
#include "d2o_test.h"

static bool has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    const char *p = text;

    while ((p = strstr(p, line)) != NULL) {
        if ((p == text || p[-1] == '\n') && (p[n] == '\n' || p[n] == '\0')) {
            return true;
        }
        p += n;
    }
    return false;
}

static size_t count_of(const char *text, const char *needle)
{
    size_t n = 0;
    const char *p = text;

    while ((p = strstr(p, needle)) != NULL) {
        n++;
        p += strlen(needle);
    }
    return n;
}

START_TEST(render_counts_what_workers_wrote)
{
    struct d2o_metrics *m = d2o_metrics_create(3);
    struct d2o_metrics_worker *a, *b;
    struct d2o_buf out = D2O_BUF_INIT;

    ck_assert_ptr_nonnull(m);
    a = d2o_metrics_claim(m, 0, 100, "task:100");
    b = d2o_metrics_claim(m, 1, 101, "task\"x:101");
    ck_assert_ptr_null(d2o_metrics_claim(m, 3, 1, "nope"));
    d2o_metrics_add(a, D2O_M_RECORDS_READ, 7);
    d2o_metrics_add(a, D2O_M_RECORDS_READ, 5);
    d2o_metrics_add(a, D2O_M_DOCS_STALE, 2);
    d2o_metrics_add(b, D2O_M_LEASES_LOST, 1);
    d2o_metrics_gauge(&a->leases_held, 4);
    d2o_metrics_observe(a, D2O_H_BULK_LATENCY, 800);     /* <= 1 ms */
    d2o_metrics_observe(a, D2O_H_BULK_LATENCY, 3000);    /* <= 5 ms */
    d2o_metrics_observe(a, D2O_H_BULK_LATENCY, 9000000); /* +Inf */
    d2o_metrics_shard_set(a, "shardId-000000000001", 1500, 12);
    d2o_metrics_shard_set(a, "shardId-000000000001", 0, 3);
    ck_assert_int_eq(d2o_metrics_render(m, &out), 0);

    ck_assert(has_line(out.data, "ddb2os_records_read_total{worker=\"task:100\"} 12"));
    ck_assert(
        has_line(out.data, "ddb2os_documents_total{worker=\"task:100\",outcome=\"stale\"} 2"));
    ck_assert(has_line(out.data, "ddb2os_leases_total{worker=\"task\\\"x:101\",event=\"lost\"} 1"));
    ck_assert(has_line(out.data, "ddb2os_leases_held{worker=\"task:100\"} 4"));
    ck_assert(has_line(out.data,
                       "ddb2os_bulk_latency_seconds_bucket{worker=\"task:100\",le=\"0.001\"} 1"));
    ck_assert(has_line(out.data,
                       "ddb2os_bulk_latency_seconds_bucket{worker=\"task:100\",le=\"0.005\"} 2"));
    ck_assert(
        has_line(out.data, "ddb2os_bulk_latency_seconds_bucket{worker=\"task:100\",le=\"5\"} 2"));
    ck_assert(has_line(out.data,
                       "ddb2os_bulk_latency_seconds_bucket{worker=\"task:100\",le=\"+Inf\"} 3"));
    ck_assert(has_line(out.data, "ddb2os_bulk_latency_seconds_count{worker=\"task:100\"} 3"));
    ck_assert(has_line(out.data, "ddb2os_bulk_latency_seconds_sum{worker=\"task:100\"} 9.003800"));
    ck_assert(has_line(out.data, "ddb2os_millis_behind_latest{worker=\"task:100\","
                                 "shard=\"shardId-000000000001\"} 0"));
    ck_assert(has_line(out.data, "ddb2os_shard_records_read_total{worker=\"task:100\","
                                 "shard=\"shardId-000000000001\"} 15"));
    /* every family once; the unused third slot is not shown */
    ck_assert_uint_eq(count_of(out.data, "# TYPE ddb2os_documents_total counter"), 1);
    ck_assert_uint_eq(count_of(out.data, "# HELP ddb2os_bulk_latency_seconds "), 1);
    ck_assert_uint_eq(count_of(out.data, "ddb2os_worker_up{"), 2);
    d2o_buf_free(&out);
    d2o_metrics_destroy(m);
}
END_TEST

START_TEST(shard_rows_and_claims)
{
    struct d2o_metrics *m = d2o_metrics_create(1);
    struct d2o_metrics_worker *w = d2o_metrics_claim(m, 0, 1, "w:1");
    struct d2o_buf out = D2O_BUF_INIT;
    char id[32];
    int i;

    for (i = 0; i < D2O_METRICS_MAX_SHARDS + 5; i++) {
        snprintf(id, sizeof(id), "s-%d", i);
        d2o_metrics_shard_set(w, id, i, 1);
    }
    /* the table is full: the extra rows are ignored, the existing ones still update */
    d2o_metrics_shard_set(w, "s-3", 33, 0);
    d2o_metrics_shard_remove(w, "s-4");
    d2o_metrics_shard_set(w, "s-5", -2, 0); /* below -1: removes */
    d2o_metrics_add(w, D2O_M_CHECKPOINTS, 9);
    ck_assert_int_eq(d2o_metrics_render(m, &out), 0);
    ck_assert_uint_eq(count_of(out.data, "ddb2os_millis_behind_latest{"),
                      D2O_METRICS_MAX_SHARDS - 2);
    ck_assert(has_line(out.data, "ddb2os_millis_behind_latest{worker=\"w:1\",shard=\"s-3\"} 33"));
    ck_assert_ptr_null(strstr(out.data, "shard=\"s-4\""));
    snprintf(id, sizeof(id), "shard=\"s-%d\"", D2O_METRICS_MAX_SHARDS + 2);
    ck_assert_ptr_null(strstr(out.data, id));
    d2o_buf_free(&out);

    /* a respawned worker in the same slot: new series under its own id, from zero */
    d2o_metrics_mark_dead(m, 0);
    w = d2o_metrics_claim(m, 0, 2, "w:2");
    ck_assert_int_eq(w->alive, 1);
    ck_assert_int_eq(d2o_metrics_render(m, &out), 0);
    ck_assert(has_line(out.data, "ddb2os_checkpoints_total{worker=\"w:2\"} 0"));
    ck_assert_ptr_null(strstr(out.data, "worker=\"w:1\""));
    ck_assert_uint_eq(count_of(out.data, "ddb2os_millis_behind_latest{"), 0);
    d2o_buf_free(&out);
    d2o_metrics_destroy(m);
}
END_TEST

START_TEST(a_forked_worker_writes_the_shared_block)
{
    struct d2o_metrics *m = d2o_metrics_create(2);
    pid_t pid;
    int status;

    pid = d2o_test_fork();
    if (pid == 0) {
        struct d2o_metrics_worker *w = d2o_metrics_claim(m, 1, (int)getpid(), "child");

        d2o_metrics_add(w, D2O_M_DOCS_INDEXED, 41);
        d2o_metrics_add(w, D2O_M_DOCS_INDEXED, 1);
        _exit(0);
    }
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_int_eq(m->workers[1].pid, pid);
    ck_assert_uint_eq(m->workers[1].counters[D2O_M_DOCS_INDEXED], 42);
    ck_assert_int_eq(m->workers[0].pid, 0);
    d2o_metrics_destroy(m);
}
END_TEST

START_TEST(readiness_names_what_is_missing)
{
    struct d2o_metrics *m = d2o_metrics_create(2);
    struct d2o_metrics_worker *w;
    char why[256];
    int64_t now = 1000000;

    ck_assert(!d2o_metrics_ready(m, now, 5000, why, sizeof(why)));
    ck_assert_str_eq(why, "no worker is running");
    w = d2o_metrics_claim(m, 0, 1, "w:1");
    ck_assert(!d2o_metrics_ready(m, now, 5000, why, sizeof(why)));
    ck_assert_ptr_nonnull(strstr(why, "event loop"));
    d2o_metrics_gauge(&w->loop_ms, now - 10);
    ck_assert(!d2o_metrics_ready(m, now, 5000, why, sizeof(why)));
    ck_assert_ptr_nonnull(strstr(why, "PostgreSQL"));
    d2o_metrics_gauge(&w->pg_ok_ms, now - 100);
    ck_assert(!d2o_metrics_ready(m, now, 5000, why, sizeof(why)));
    ck_assert_ptr_nonnull(strstr(why, "OpenSearch"));
    d2o_metrics_gauge(&w->opensearch_ok_ms, now - 6000); /* too old */
    ck_assert(!d2o_metrics_ready(m, now, 5000, why, sizeof(why)));
    d2o_metrics_gauge(&w->opensearch_ok_ms, now - 4000);
    ck_assert(d2o_metrics_ready(m, now, 5000, why, sizeof(why)));
    d2o_metrics_mark_dead(m, 0);
    ck_assert(!d2o_metrics_ready(m, now, 5000, why, sizeof(why)));
    d2o_metrics_destroy(m);
}
END_TEST

START_TEST(readiness_and_metrics_name_the_source)
{
    struct d2o_metrics *m = d2o_metrics_create(1);
    struct d2o_metrics_worker *w = d2o_metrics_claim(m, 0, 1, "w:1");
    struct d2o_buf out = D2O_BUF_INIT;
    char why[256];
    int64_t now = 1000000;

    d2o_metrics_gauge(&w->loop_ms, now);
    d2o_metrics_gauge(&w->pg_ok_ms, now);
    d2o_metrics_gauge(&w->opensearch_ok_ms, now);
    d2o_metrics_kinesis(w, now, "cannot describe the stream of books: connection refused");
    /* no source recorded (a bare block): Kinesis, as before */
    ck_assert(!d2o_metrics_ready(m, now, 5000, why, sizeof(why)));
    ck_assert_str_eq(why, "Kinesis: cannot describe the stream of books: connection refused");
    ck_assert_int_eq(d2o_metrics_render(m, &out), 0);
    ck_assert_ptr_null(strstr(out.data, "ddb2os_source_info"));
    d2o_buf_free(&out);

    d2o_metrics_set_source(m, "dynamodb-streams", "books");
    ck_assert(!d2o_metrics_ready(m, now, 5000, why, sizeof(why)));
    ck_assert_str_eq(why,
                     "DynamoDB Streams: cannot describe the stream of books: connection refused");
    ck_assert_int_eq(d2o_metrics_render(m, &out), 0);
    ck_assert(has_line(out.data, "# TYPE ddb2os_source_info gauge"));
    ck_assert(
        has_line(out.data, "ddb2os_source_info{source=\"dynamodb-streams\",stream=\"books\"} 1"));
    ck_assert_uint_eq(count_of(out.data, "ddb2os_source_info{"), 1);
    d2o_buf_free(&out);

    /* once the worker has resolved the table's stream: its ARN, and the table */
    d2o_metrics_set_stream(w, "arn:aws:dynamodb:us-east-1:1:table/books/stream/2026-12-01",
                           "books");
    ck_assert_int_eq(d2o_metrics_render(m, &out), 0);
    ck_assert(has_line(out.data,
                       "ddb2os_source_info{source=\"dynamodb-streams\",stream=\"arn:aws:"
                       "dynamodb:us-east-1:1:table/books/stream/2026-12-01\",table=\"books\"} 1"));
    ck_assert_uint_eq(count_of(out.data, "ddb2os_source_info{"), 1);
    d2o_buf_free(&out);
    d2o_metrics_set_stream(w, NULL, NULL);

    d2o_metrics_set_source(m, "kinesis", "a\"b");
    ck_assert(!d2o_metrics_ready(m, now, 5000, why, sizeof(why)));
    ck_assert_ptr_nonnull(strstr(why, "Kinesis: "));
    ck_assert_int_eq(d2o_metrics_render(m, &out), 0);
    ck_assert(has_line(out.data, "ddb2os_source_info{source=\"kinesis\",stream=\"a\\\"b\"} 1"));
    d2o_buf_free(&out);
    d2o_metrics_destroy(m);
}
END_TEST

START_TEST(emf_reports_increases)
{
    struct d2o_metrics *m = d2o_metrics_create(1);
    struct d2o_metrics_worker *w = d2o_metrics_claim(m, 0, 1, "t:1");
    uint64_t prev[D2O_METRICS_EMF_PREV] = {0};
    struct d2o_buf out = D2O_BUF_INIT;

    d2o_metrics_add(w, D2O_M_RECORDS_READ, 10);
    ck_assert_int_eq(d2o_metrics_emf(w, prev, "ddb2os", 1764000000000, &out), 0);
    ck_assert_ptr_nonnull(strstr(out.data, "\"Timestamp\":1764000000000"));
    ck_assert_ptr_nonnull(strstr(out.data, "\"Namespace\":\"ddb2os\""));
    ck_assert_ptr_nonnull(strstr(out.data, "\"Worker\":\"t:1\""));
    ck_assert_ptr_nonnull(strstr(out.data, "\"RecordsRead\":10"));
    d2o_buf_free(&out);
    d2o_metrics_add(w, D2O_M_RECORDS_READ, 3);
    ck_assert_int_eq(d2o_metrics_emf(w, prev, "ddb2os", 1764000060000, &out), 0);
    ck_assert_ptr_nonnull(strstr(out.data, "\"RecordsRead\":3"));
    d2o_buf_free(&out);
    d2o_metrics_destroy(m);
}
END_TEST

/* ---- the replication latency histogram (a fixture: 2 slots, w claimed in the first) ---- */

#define LAT "ddb2os_replication_latency_seconds"

static struct d2o_metrics *lm;
static struct d2o_metrics_worker *lw;
static struct d2o_buf lout;

static void latency_setup(void)
{
    lm = d2o_metrics_create(2);
    ck_assert_ptr_nonnull(lm);
    lw = d2o_metrics_claim(lm, 0, 1, "w:1");
    lout = (struct d2o_buf)D2O_BUF_INIT;
}

static void latency_teardown(void)
{
    d2o_buf_free(&lout);
    d2o_metrics_destroy(lm);
}

/* Renders lm into lout (emptied first). */
static const char *render_latency(void)
{
    d2o_buf_free(&lout);
    ck_assert_int_eq(d2o_metrics_render(lm, &lout), 0);
    return lout.data;
}

/* Every line of the NULL-terminated list is a whole line of text. */
static void expect_lines(const char *text, const char *const *lines)
{
    for (; *lines; lines++) {
        ck_assert_msg(has_line(text, *lines), "no line %s", *lines);
    }
}

/* A change made at 1764000000 s (its version) and acknowledged us later. */
static void ack_after(int64_t us)
{
    d2o_metrics_observe_change(lw, 1764000000000000, 1764000000000000 + us);
}

START_TEST(replication_latency_buckets_sum_and_count)
{
    ack_after(1000);     /* on the 1 ms bound: le="0.001" */
    ack_after(1001);     /* just above: le="0.0025" */
    ack_after(999999);   /* le="1" */
    ack_after(1000000);  /* le="1" */
    ack_after(1000001);  /* le="1.5" */
    ack_after(750000);   /* on the 0.75 s bound */
    ack_after(1600000);  /* le="2" */
    ack_after(60000000); /* on the 60 s bound */
    ack_after(60000001); /* +Inf */
    expect_lines(
        render_latency(),
        (const char *const[]){
            LAT "_bucket{worker=\"w:1\",le=\"0.001\"} 1",
            LAT "_bucket{worker=\"w:1\",le=\"0.0025\"} 2",
            LAT "_bucket{worker=\"w:1\",le=\"0.5\"} 2", LAT "_bucket{worker=\"w:1\",le=\"0.75\"} 3",
            LAT "_bucket{worker=\"w:1\",le=\"1\"} 5", LAT "_bucket{worker=\"w:1\",le=\"1.5\"} 6",
            LAT "_bucket{worker=\"w:1\",le=\"2\"} 7", LAT "_bucket{worker=\"w:1\",le=\"2.5\"} 7",
            LAT "_bucket{worker=\"w:1\",le=\"30\"} 7", LAT "_bucket{worker=\"w:1\",le=\"60\"} 8",
            LAT "_bucket{worker=\"w:1\",le=\"+Inf\"} 9", LAT "_count{worker=\"w:1\"} 9",
            /* 0.001 + 0.001001 + 0.999999 + 1 + 1.000001 + 0.75 + 1.6 + 60 + 60.000001 */
            LAT "_sum{worker=\"w:1\"} 125.352002",
            "ddb2os_replication_latency_skewed_total{worker=\"w:1\"} 0", NULL});
}
END_TEST

START_TEST(replication_latency_clamps_skew_and_skips_no_timestamp)
{
    ack_after(-250000); /* DynamoDB's clock 250 ms ahead: 0, counted as skewed */
    ack_after(0);
    d2o_metrics_observe_change(lw, 0, 1764000000000000);  /* no timestamp: not observed */
    d2o_metrics_observe_change(lw, -5, 1764000000000000); /* nor a negative one */
    d2o_metrics_observe_change(NULL, 1, 2);
    expect_lines(
        render_latency(),
        (const char *const[]){LAT "_bucket{worker=\"w:1\",le=\"0.001\"} 2",
                              LAT "_count{worker=\"w:1\"} 2", LAT "_sum{worker=\"w:1\"} 0.000000",
                              "ddb2os_replication_latency_skewed_total{worker=\"w:1\"} 1", NULL});
}
END_TEST

/* The family as Prometheus expects it: one HELP and TYPE histogram, then per worker 19 _bucket
 * lines in increasing le ending with +Inf, cumulative, then _sum and _count. */
START_TEST(replication_latency_exposition)
{
    static const char *const le[] = {"0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1",
                                     "0.25",  "0.5",    "0.75",  "1",    "1.5",   "2",    "2.5",
                                     "5",     "10",     "30",    "60",   "+Inf"};
    /* 0, 20 ms, .. 1.98 s: 1 up to 10 ms, 2 to 25 ms, 3 to 50, 6 to 100, 13 to 250, 26 to 500,
     * 38 to 750, 51 to 1 s, 76 to 1.5 s, all 100 from 2 s */
    static const unsigned cum[] = {1,  1,  1,   1,   2,   3,   6,   13,  26, 38,
                                   51, 76, 100, 100, 100, 100, 100, 100, 100};
    const char *text, *p;
    char line[160];
    size_t i;

    (void)d2o_metrics_claim(lm, 1, 2, "b:2");
    for (i = 0; i < 100; i++) {
        ack_after((int64_t)i * 20000);
    }
    text = render_latency();
    ck_assert_uint_eq(count_of(text, "# HELP " LAT " "), 1);
    ck_assert_uint_eq(count_of(text, "# TYPE " LAT " histogram\n"), 1);
    ck_assert_uint_eq(count_of(text, LAT "_bucket{worker=\"w:1\""), 19);
    ck_assert_uint_eq(count_of(text, LAT "_bucket{worker=\"b:2\""), 19);
    ck_assert_ptr_nonnull(strstr(text, "# TYPE " LAT " histogram\n" LAT "_bucket{"));
    p = strstr(text, LAT "_bucket{worker=\"w:1\"");
    for (i = 0; i < 19; i++) {
        snprintf(line, sizeof(line), LAT "_bucket{worker=\"w:1\",le=\"%s\"} %u\n", le[i], cum[i]);
        ck_assert_msg(strncmp(p, line, strlen(line)) == 0, "expected %s got %.80s", line, p);
        p += strlen(line);
    }
    snprintf(line, sizeof(line), "%s_sum{worker=\"w:1\"} 99.000000\n%s_count{worker=\"w:1\"} 100\n",
             LAT, LAT);
    ck_assert_msg(strncmp(p, line, strlen(line)) == 0, "expected %s got %.120s", line, p);
    ck_assert(has_line(text, LAT "_bucket{worker=\"b:2\",le=\"+Inf\"} 0"));
}
END_TEST

/* One EMF line with what lw did since prev; it must contain every string of the list. */
static void expect_emf(uint64_t *prev, int64_t epoch_ms, const char *const *parts)
{
    d2o_buf_free(&lout);
    ck_assert_int_eq(d2o_metrics_emf(lw, prev, "ddb2os", epoch_ms, &lout), 0);
    for (; *parts; parts++) {
        ck_assert_msg(strstr(lout.data, *parts), "no %s in %s", *parts, lout.data);
    }
}

START_TEST(emf_reports_latency_quantiles_of_the_interval)
{
    uint64_t prev[D2O_METRICS_EMF_PREV] = {0};
    int i;

    /* nothing acknowledged: no latency metrics declared or given */
    expect_emf(prev, 1764000000000, (const char *const[]){"\"LeasesHeld\":0}", NULL});
    ck_assert_ptr_null(strstr(lout.data, "ReplicationLatency"));

    for (i = 0; i < 98; i++) {
        ack_after(80000); /* le 0.1 s */
    }
    ack_after(700000);  /* le 0.75 s: the 99th of 100 */
    ack_after(9000000); /* le 10 s */
    expect_emf(
        prev, 1764000060000,
        (const char *const[]){"{\"Name\":\"ReplicationLatencyP99\",\"Unit\":\"Milliseconds\"}",
                              "\"ChangesAcknowledged\":100,", "\"ReplicationLatencyP50\":100,",
                              "\"ReplicationLatencyP99\":750}", NULL});

    /* the next line covers only what came since: one change past 60 s */
    ack_after(61000000);
    expect_emf(prev, 1764000120000,
               (const char *const[]){"\"ChangesAcknowledged\":1,",
                                     "\"ReplicationLatencyP50\":60000,",
                                     "\"ReplicationLatencyP99\":60000}", NULL});
}
END_TEST

/* ---- the endpoint ---- */

static size_t collect(char *p, size_t size, size_t n, void *arg)
{
    return d2o_buf_append(arg, p, size * n) == 0 ? size * n : 0;
}

static long get(int port, const char *method, const char *path, struct d2o_buf *body, char *ctype,
                size_t ctype_size)
{
    CURL *c = curl_easy_init();
    char url[128];
    long status = 0;
    char *ct = NULL;

    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (strcmp(method, "POST") == 0) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, "x=1");
    }
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, body);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
    ck_assert_int_eq(curl_easy_perform(c), CURLE_OK);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
    if (ctype) {
        snprintf(ctype, ctype_size, "%s", ct ? ct : "");
    }
    curl_easy_cleanup(c);
    return status;
}

START_TEST(endpoint_serves_metrics_health_and_readiness)
{
    struct d2o_metrics *m = d2o_metrics_create(1);
    struct d2o_metrics_worker *w = d2o_metrics_claim(m, 0, 1, "w:1");
    struct d2o_metrics_server *s;
    struct d2o_buf body = D2O_BUF_INIT;
    char err[256], ctype[128], cmd[512], path[] = "/tmp/d2o-metrics-XXXXXX";
    int port, fd, status;
    pid_t pid;
    FILE *f;

    d2o_metrics_add(w, D2O_M_RECORDS_READ, 5);
    ck_assert_ptr_null(d2o_metrics_server_start(m, "localhost", 0, 5000, err, sizeof(err)));
    ck_assert_ptr_nonnull(strstr(err, "numeric IPv4"));
    s = d2o_metrics_server_start(m, "127.0.0.1", 0, 5000, err, sizeof(err));
    ck_assert_msg(s != NULL, "%s", err);
    port = d2o_metrics_server_port(s);
    ck_assert_int_gt(port, 0);
    ck_assert_int_ge(d2o_metrics_server_fd(s), 0);
    pid = d2o_test_fork();
    if (pid == 0) {
        /* the server's loop, bounded: at most 20 s */
        int64_t end = d2o_mono_ms() + 20000;
        struct pollfd p = {d2o_metrics_server_fd(s), POLLIN, 0};

        while (d2o_mono_ms() < end) {
            (void)poll(&p, 1, 100);
            d2o_metrics_server_run(s);
        }
        _exit(0);
    }
    ck_assert_int_eq(get(port, "GET", "/healthz", &body, NULL, 0), 200);
    ck_assert_str_eq(body.data, "ok\n");
    d2o_buf_free(&body);
    ck_assert_int_eq(get(port, "GET", "/readyz", &body, NULL, 0), 503);
    ck_assert_ptr_nonnull(strstr(body.data, "event loop"));
    d2o_buf_free(&body);
    d2o_metrics_gauge(&w->loop_ms, d2o_mono_ms());
    d2o_metrics_gauge(&w->pg_ok_ms, d2o_mono_ms());
    d2o_metrics_gauge(&w->opensearch_ok_ms, d2o_mono_ms());
    ck_assert_int_eq(get(port, "GET", "/readyz", &body, NULL, 0), 200);
    ck_assert_str_eq(body.data, "ready\n");
    d2o_buf_free(&body);
    ck_assert_int_eq(get(port, "GET", "/nope", &body, NULL, 0), 404);
    d2o_buf_free(&body);
    ck_assert_int_eq(get(port, "POST", "/metrics", &body, NULL, 0), 405);
    d2o_buf_free(&body);
    ck_assert_int_eq(get(port, "GET", "/metrics", &body, ctype, sizeof(ctype)), 200);
    ck_assert_str_eq(ctype, "text/plain; version=0.0.4; charset=utf-8");
    ck_assert(has_line(body.data, "ddb2os_records_read_total{worker=\"w:1\"} 5"));

    /* Prometheus's own parser (Debian's python3-prometheus-client) reads it. */
    fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, body.data, body.len), (ssize_t)body.len);
    close(fd);
    snprintf(cmd, sizeof(cmd),
             "/usr/bin/python3 -c 'import sys; from prometheus_client.parser import "
             "text_string_to_metric_families as p; fams = list(p(open(sys.argv[1]).read())); "
             "print(len(fams), sum(len(f.samples) for f in fams))' %s",
             path);
    f = popen(cmd, "r");
    ck_assert_ptr_nonnull(f);
    {
        int fams = 0, samples = 0;

        ck_assert_int_eq(fscanf(f, "%d %d", &fams, &samples), 2);
        ck_assert_int_ge(fams, 15);
        ck_assert_int_gt(samples, fams);
    }
    ck_assert_int_eq(pclose(f), 0);
    unlink(path);
    d2o_buf_free(&body);

    kill(pid, SIGKILL);
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    d2o_metrics_server_stop(s);
    d2o_metrics_destroy(m);
}
END_TEST

Suite *d2o_test_suite(void)
{
    Suite *s = suite_create("metrics");
    TCase *tc = tcase_create("metrics");

    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, render_counts_what_workers_wrote);
    tcase_add_test(tc, shard_rows_and_claims);
    tcase_add_test(tc, a_forked_worker_writes_the_shared_block);
    tcase_add_test(tc, readiness_names_what_is_missing);
    tcase_add_test(tc, readiness_and_metrics_name_the_source);
    tcase_add_test(tc, emf_reports_increases);
    tcase_add_test(tc, endpoint_serves_metrics_health_and_readiness);
    suite_add_tcase(s, tc);
    tc = tcase_create("replication latency");
    tcase_add_checked_fixture(tc, latency_setup, latency_teardown);
    tcase_add_test(tc, replication_latency_buckets_sum_and_count);
    tcase_add_test(tc, replication_latency_clamps_skew_and_skips_no_timestamp);
    tcase_add_test(tc, replication_latency_exposition);
    tcase_add_test(tc, emf_reports_latency_quantiles_of_the_interval);
    suite_add_tcase(s, tc);
    return s;
}
