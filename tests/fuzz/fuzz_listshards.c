/* libFuzzer target: ListShards / DescribeStream(Summary) / GetShardIterator / PutRecords bodies. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "d2o/kinesis.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *body = (const char *)data;
    struct d2o_kinesis_shards s;
    struct d2o_kinesis_summary sum;
    struct d2o_kinesis_put_result p;
    struct d2o_kinesis_err err;
    char *it = NULL, mid[48];
    size_t i;

    if (d2o_kinesis_parse_list_shards(body, size, &s, &err) == 0) {
        for (i = 0; i < s.n_shards; i++) {
            if (!s.shards[i].shard_id || !d2o_kinesis_seq_valid(s.shards[i].seq_start)) {
                abort();
            }
            (void)d2o_kinesis_hash_mid(s.shards[i].hash_start, s.shards[i].hash_end, mid,
                                       sizeof(mid));
        }
        d2o_kinesis_shards_free(&s);
    } else if (err.message[0] == '\0' || s.n_shards != 0) {
        abort();
    }
    if (d2o_kinesis_parse_describe_stream(body, size, &s, &err) == 0) {
        if (!s.stream_status) {
            abort();
        }
        d2o_kinesis_shards_free(&s);
    }
    if (d2o_kinesis_parse_summary(body, size, &sum, &err) == 0) {
        d2o_kinesis_summary_free(&sum);
    }
    if (d2o_kinesis_parse_shard_iterator(body, size, &it, &err) == 0) {
        free(it);
    }
    if (d2o_kinesis_parse_put_records(body, size, &p, &err) == 0) {
        if (p.failed_count > p.n_items) {
            abort();
        }
        d2o_kinesis_put_result_free(&p);
    }
    return 0;
}
