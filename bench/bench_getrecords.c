/*
 * GetRecords throughput from kinesalite: put N ~1 KB records into a fresh one-shard stream with
 * PutRecords batches of 500, then time draining the shard with Limit 10000 (HTTP + SigV4 + JSON
 * parse + base64 decode of every record).
 *
 * usage: bench_getrecords [ENDPOINT [N [RECORD_BYTES]]]   (ENDPOINT default: $D2O_TEST_KINESALITE)
 *
 * With --parse, no emulator: the parser alone, CALLS times over one GetRecords answer of RECORDS
 * records of RECORD_BYTES bytes shaped as Kinesis writes it, in CPU time per record.
 *
 * usage: bench_getrecords --parse [CALLS [RECORDS [RECORD_BYTES]]]   (default 20 10000 1000)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "d2o/buf.h"
#include "d2o/clock.h"
#include "d2o/http.h"
#include "d2o/kinesis.h"
#include "d2o/sigv4.h"

/* CPU time of this process (client side only), microseconds. */
static int64_t cpu_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int fail(const char *what, const struct d2o_kinesis_err *err)
{
    fprintf(stderr, "bench_getrecords: %s: %s\n", what, err ? err->message : "");
    return 1;
}

/* One answer of n records of size bytes, members in the order Kinesis writes them. */
static int build_answer(struct d2o_buf *b, long n, long size)
{
    unsigned char *raw = malloc((size_t)size), *b64 = malloc((size_t)size / 3 * 4 + 8);
    long i, j;
    int r = raw && b64 ? d2o_buf_puts(b, "{\"Records\":[") : -1;

    for (i = 0; i < n && r == 0; i++) {
        for (j = 0; j < size; j++) {
            raw[j] = (unsigned char)('a' + (i + j) % 26);
        }
        EVP_EncodeBlock(b64, raw, (int)size);
        r = d2o_buf_printf(b,
                           "%s{\"SequenceNumber\":\"4959033827149025660855969253836157109592157"
                           "5989%08ld\",\"ApproximateArrivalTimestamp\":1700000000.%03ld,"
                           "\"Data\":\"%s\",\"PartitionKey\":\"pk%ld\"}",
                           i ? "," : "", i, i % 1000, (const char *)b64, i % 1000);
    }
    if (r == 0) {
        r = d2o_buf_puts(b, "],\"NextShardIterator\":\"AAAAAAAAAAH9HCHKiA1EW1F2k0Q6LBhUDfzqMj"
                            "z9p1eu2AKaW4Qh8CbVEV5tH7kPBBJ0gPyNMGfCDkASdy8Vpnmcd3V1BfzMWWDZ0"
                            "mVbR1NKhnpb3h1FcPIzpuCErpXrjZ2H9QCsOEEDhElBfzD9Jbx\","
                            "\"MillisBehindLatest\":0}");
    }
    free(raw);
    free(b64);
    return r;
}

static int parse_only(int argc, char **argv)
{
    long calls = argc > 2 ? strtol(argv[2], NULL, 10) : 20;
    long n = argc > 3 ? strtol(argv[3], NULL, 10) : 10000;
    long size = argc > 4 ? strtol(argv[4], NULL, 10) : 1000;
    struct d2o_buf body = D2O_BUF_INIT;
    struct d2o_kinesis_records r;
    struct d2o_kinesis_err err;
    int64_t c0, best = INT64_MAX, total = 0;
    long i;

    if (calls <= 0 || n <= 0 || size <= 0 || size > 1000000 || build_answer(&body, n, size) < 0) {
        fprintf(stderr, "usage: %s --parse [CALLS [RECORDS [RECORD_BYTES]]]\n", argv[0]);
        return 2;
    }
    for (i = 0; i < calls; i++) {
        c0 = cpu_us();
        if (d2o_kinesis_parse_get_records(body.data, body.len, &r, &err) != 0 ||
            r.n_records != (size_t)n) {
            fprintf(stderr, "bench_getrecords: %s\n", err.message);
            return 1;
        }
        d2o_kinesis_records_free(&r);
        c0 = cpu_us() - c0;
        total += c0;
        best = c0 < best ? c0 : best;
    }
    printf("parse: %ld answers of %ld records of %ld bytes (%zu bytes each)\n", calls, n, size,
           body.len);
    printf("parse: %.3f us per record (best answer), %.3f us per record (mean), %.0f MB/s\n",
           (double)best / (double)n, (double)total / (double)calls / (double)n,
           (double)body.len / (double)best);
    d2o_buf_free(&body);
    return 0;
}

int main(int argc, char **argv)
{
    struct d2o_aws_creds creds = {"AKIDTEST", "test-secret", NULL};
    struct d2o_kinesis_put_entry e[D2O_KINESIS_PUT_MAX];
    struct d2o_kinesis_iter_spec spec = {D2O_ITER_TRIM_HORIZON, NULL, 0};
    struct d2o_kinesis_put_result res;
    struct d2o_kinesis_records r;
    struct d2o_kinesis_shards shards;
    struct d2o_kinesis_err err;
    struct d2o_kinesis *k = NULL;
    struct d2o_http *http = NULL;
    const char *endpoint = argc > 1 ? argv[1] : getenv("D2O_TEST_KINESALITE");
    long n = argc > 2 ? strtol(argv[2], NULL, 10) : 50000;
    long size = argc > 3 ? strtol(argv[3], NULL, 10) : 1000;
    char stream[64] = "", errstr[256], pk[D2O_KINESIS_PUT_MAX][16], *payload = NULL, *it = NULL;
    long put = 0, got = 0, calls = 0, i, batch;
    int64_t t0, t_put, t_get, c0, c_get, bytes = 0;
    int rc = 1;

    if (argc > 1 && strcmp(argv[1], "--parse") == 0) {
        return parse_only(argc, argv);
    }
    if (!endpoint || n <= 0 || size <= 0 || size > 1000000) {
        fprintf(stderr, "usage: %s [ENDPOINT [N [RECORD_BYTES]]] (or set D2O_TEST_KINESALITE)\n",
                argv[0]);
        return 2;
    }
    http = d2o_http_new(NULL, errstr, sizeof(errstr));
    k = http ? d2o_kinesis_new_endpoint(http, "us-east-1", endpoint, &creds, errstr, sizeof(errstr))
             : NULL;
    payload = malloc((size_t)size);
    if (!k || !payload) {
        fprintf(stderr, "bench_getrecords: %s\n", errstr);
        goto out;
    }
    for (i = 0; i < size; i++) {
        payload[i] = (char)('a' + i % 26);
    }
    snprintf(stream, sizeof(stream), "d2o-bench-%ld-%lld", (long)getpid(),
             (long long)(d2o_wall_us() / 1000));
    if (d2o_kinesis_create_stream(k, stream, 1, &err) != 0 ||
        d2o_kinesis_wait_active(k, stream, 60000, &err) != 0) {
        rc = fail("create stream", &err);
        goto out;
    }
    t0 = d2o_mono_us();
    while (put < n) {
        batch = n - put < D2O_KINESIS_PUT_MAX ? n - put : D2O_KINESIS_PUT_MAX;
        for (i = 0; i < batch; i++) {
            snprintf(pk[i], sizeof(pk[i]), "pk%ld", (put + i) % 1000);
            e[i].partition_key = pk[i];
            e[i].data = payload;
            e[i].data_len = (size_t)size;
            e[i].explicit_hash_key = NULL;
        }
        if (d2o_kinesis_put_records(k, stream, e, (size_t)batch, &res, &err) != 0) {
            rc = fail("PutRecords", &err);
            goto out;
        }
        put += batch - (long)res.failed_count; /* failed ones are simply put again */
        d2o_kinesis_put_result_free(&res);
    }
    t_put = d2o_mono_us() - t0;

    if (d2o_kinesis_list_all_shards(k, stream, D2O_SHARD_FILTER_NONE, 0, &shards, &err) != 0 ||
        shards.n_shards != 1 ||
        d2o_kinesis_get_shard_iterator(k, stream, shards.shards[0].shard_id, &spec, &it, &err) !=
            0) {
        rc = fail("iterator", &err);
        goto out;
    }
    d2o_kinesis_shards_free(&shards);
    t0 = d2o_mono_us();
    c0 = cpu_us();
    while (got < n && it) {
        if (d2o_kinesis_get_records(k, it, 10000, &r, &err) != 0) {
            rc = fail("GetRecords", &err);
            goto out;
        }
        calls++;
        for (i = 0; i < (long)r.n_records; i++) {
            bytes += (int64_t)r.records[i].data_len;
        }
        got += (long)r.n_records;
        free(it);
        it = r.next_iterator;
        r.next_iterator = NULL;
        d2o_kinesis_records_free(&r);
    }
    t_get = d2o_mono_us() - t0;
    c_get = cpu_us() - c0;
    if (got != n || bytes != (int64_t)n * size) {
        fprintf(stderr, "bench_getrecords: read %ld records (%lld bytes), want %ld\n", got,
                (long long)bytes, n);
        goto out;
    }
    printf("records=%ld record_bytes=%ld\n", n, size);
    printf("put:  %.0f records/s (%.2f s, batches of %d)\n", (double)n * 1e6 / (double)t_put,
           (double)t_put / 1e6, D2O_KINESIS_PUT_MAX);
    printf("get:  %.0f records/s (%.2f s, %ld GetRecords calls, Limit 10000, %.1f MB/s decoded)\n",
           (double)n * 1e6 / (double)t_get, (double)t_get / 1e6, calls,
           (double)bytes / (double)t_get);
    printf("      client CPU %.3f s (%.1f us per record; the rest is the emulator)\n",
           (double)c_get / 1e6, (double)c_get / (double)n);
    rc = 0;
out:
    if (k && stream[0] && d2o_kinesis_delete_stream(k, stream, &err) != 0) {
        fprintf(stderr, "bench_getrecords: cleanup: %s\n", err.message);
    }
    free(it);
    free(payload);
    d2o_kinesis_free(k);
    d2o_http_free(http);
    return rc;
}
