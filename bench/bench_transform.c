/*
 * Transform throughput: realistic ~1.1 KB DynamoDB change records (a NewImage of 14 attributes:
 * S, N, BOOL, NULL, SS, NS, B, a two-level M and an L of three M) through the record parser and
 * the document builder into bulk NDJSON, against json-c's own parse + serialise of the same bytes
 * in the same run.
 *
 * usage: bench_transform [RECORDS]   (default 200000)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "d2o/conf.h"
#include "d2o/document.h"
#include "d2o/record.h"
#include "d2o/util.h"

static double cpu_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int make_record(char *buf, size_t n, long i)
{
    return snprintf(
        buf, n,
        "{\"awsRegion\":\"eu-west-1\",\"eventID\":\"0b3d5c4e-8a1f-4f7e-9c55-%012ld\","
        "\"eventName\":\"MODIFY\",\"userIdentity\":null,\"recordFormat\":\"application/json\","
        "\"tableName\":\"books\",\"dynamodb\":{\"ApproximateCreationDateTime\":%lld,"
        "\"ApproximateCreationDateTimePrecision\":\"MICROSECOND\",\"Keys\":{\"pk\":{\"S\":"
        "\"author#%ld\"},\"sk\":{\"S\":\"book#%ld\"}},\"NewImage\":{\"pk\":{\"S\":\"author#%ld\"},"
        "\"sk\":{\"S\":\"book#%ld\"},\"title\":{\"S\":\"The Left Hand of Darkness, volume %ld\"},"
        "\"pages\":{\"N\":\"%ld\"},\"price\":{\"N\":\"19.99\"},\"in_print\":{\"BOOL\":true},"
        "\"sequel\":{\"NULL\":true},\"tags\":{\"SS\":[\"sf\",\"classic\",\"hainish\"]},"
        "\"ratings\":{\"NS\":[\"4.5\",\"5\",\"3.75\"]},\"cover\":{\"B\":"
        "\"iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAAB"
        "JRU5ErkJggg==\"},\"publisher\":{\"M\":{\"name\":{\"S\":\"Ace Books\"},\"address\":{\"M\":"
        "{\"city\":{\"S\":\"New York\"},\"zip\":{\"S\":\"10014\"}}}}},\"editions\":{\"L\":["
        "{\"M\":{\"year\":{\"N\":\"1969\"},\"isbn\":{\"S\":\"978-0-441-47812-5\"}}},"
        "{\"M\":{\"year\":{\"N\":\"1976\"},\"isbn\":{\"S\":\"978-0-441-47813-2\"}}},"
        "{\"M\":{\"year\":{\"N\":\"2000\"},\"isbn\":{\"S\":\"978-0-441-00731-2\"}}}]},"
        "\"summary\":{\"S\":\"A lone human envoy is sent to Gethen, a planet whose people are "
        "ambisexual, to persuade its nations to join an interstellar federation.\"},"
        "\"updated_by\":{\"S\":\"api-gateway\"}},\"SizeBytes\":%ld},"
        "\"eventSource\":\"aws:dynamodb\"}",
        i, 1732500000000000LL + i, i % 977, i, i % 977, i, i, 100 + i % 900, 900 + i % 200);
}

int main(int argc, char **argv)
{
    long n = 200000, i;
    int64_t arg;
    char **recs;
    size_t *lens, total = 0, out_bytes = 0;
    struct d2o_config conf;
    double t0, t_ours, t_jsonc;
    char err[256];

    if (argc > 1) {
        if (d2o_parse_i64(argv[1], 1, 10000000, &arg) < 0) {
            fprintf(stderr, "usage: bench_transform [RECORDS]\n");
            return 2;
        }
        n = (long)arg;
    }
    if (d2o_conf_init(&conf) < 0 ||
        d2o_conf_set(&conf, "key_schema", "books=pk:sk", "bench", err, sizeof(err)) < 0) {
        return 1;
    }
    recs = calloc((size_t)n, sizeof(*recs));
    lens = calloc((size_t)n, sizeof(*lens));
    for (i = 0; i < n; i++) {
        char buf[4096];
        int len = make_record(buf, sizeof(buf), i);

        recs[i] = strdup(buf);
        lens[i] = (size_t)len;
        total += (size_t)len;
    }

    /* ddb2os: parse + convert + NDJSON, the path 'ddb2os transform' and the worker take. */
    t0 = cpu_s();
    for (i = 0; i < n; i++) {
        struct d2o_record rec;
        struct d2o_doc_op op;

        if (d2o_record_parse(recs[i], lens[i], &rec, err, sizeof(err)) < 0 ||
            d2o_doc_build(&rec, &conf, &op, err, sizeof(err)) < 0) {
            fprintf(stderr, "bench_transform: record %ld: %s\n", i, err);
            return 1;
        }
        out_bytes += op.ndjson.len;
        d2o_doc_op_free(&op);
        d2o_record_free(&rec);
    }
    t_ours = cpu_s() - t0;

    /* json-c alone: parse the same bytes and serialise them again. */
    t0 = cpu_s();
    for (i = 0; i < n; i++) {
        struct json_tokener *tok = json_tokener_new_ex(80);
        struct json_object *o = json_tokener_parse_ex(tok, recs[i], (int)lens[i]);
        const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);

        if (!s) {
            return 1;
        }
        json_object_put(o);
        json_tokener_free(tok);
    }
    t_jsonc = cpu_s() - t0;

    printf("records: %ld, average %.0f bytes in, %.0f bytes of NDJSON out\n", n,
           (double)total / (double)n, (double)out_bytes / (double)n);
    printf("ddb2os transform: %.0f records/s/core, %.1f MB/s, %.2f us/record\n", (double)n / t_ours,
           (double)total / t_ours / 1e6, t_ours * 1e6 / (double)n);
    printf("json-c parse+serialise: %.0f records/s/core, %.1f MB/s, %.2f us/record\n",
           (double)n / t_jsonc, (double)total / t_jsonc / 1e6, t_jsonc * 1e6 / (double)n);
    printf("ratio (ddb2os time / json-c time): %.2f\n", t_ours / t_jsonc);
    for (i = 0; i < n; i++) {
        free(recs[i]);
    }
    free(recs);
    free(lens);
    d2o_conf_free(&conf);
    return 0;
}
