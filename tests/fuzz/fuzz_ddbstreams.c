/* libFuzzer target: DynamoDB Streams GetRecords / DescribeStream / ListStreams bodies, and every
 * record GetRecords accepts through the change-record parser. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "d2o/ddbstreams.h"
#include "d2o/record.h"

#define ARN "arn:aws:dynamodb:us-east-1:000000000000:table/books/stream/2026-12-01T00:00:00.000"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *body = (const char *)data;
    struct d2o_kinesis_records r;
    struct d2o_kinesis_shards s;
    struct d2o_ddbstreams_info info;
    struct d2o_ddbstreams_list l;
    struct d2o_kinesis_err err;
    struct d2o_record rec;
    char why[256];
    size_t i;

    if (d2o_ddbstreams_parse_get_records(body, size, ARN, &r, &err) == 0) {
        for (i = 0; i < r.n_records; i++) {
            if (!d2o_ddbstreams_seq_valid(r.records[i].sequence_number) || !r.records[i].data ||
                strlen((const char *)r.records[i].data) != r.records[i].data_len) {
                abort();
            }
            /* a record may still lack what a change needs; if it parses, it is the table's */
            if (d2o_record_parse((const char *)r.records[i].data, r.records[i].data_len, &rec, why,
                                 sizeof(why)) == 0) {
                if (strcmp(rec.table, "books") != 0 || rec.precision != D2O_PRECISION_SECOND) {
                    abort();
                }
                d2o_record_free(&rec);
            }
        }
        d2o_kinesis_records_free(&r);
    } else if (err.message[0] == '\0' || r.n_records != 0) {
        abort();
    }
    if (d2o_ddbstreams_parse_describe_stream(body, size, &s, &info, &err) == 0) {
        if (!s.stream_status || !info.stream_arn) {
            abort();
        }
        for (i = 0; i < s.n_shards; i++) {
            if (!s.shards[i].shard_id || !s.shards[i].shard_id[0]) {
                abort();
            }
        }
        d2o_kinesis_shards_free(&s);
        d2o_ddbstreams_info_free(&info);
    }
    if (d2o_ddbstreams_parse_list_streams(body, size, &l, &err) == 0) {
        d2o_ddbstreams_list_free(&l);
    }
    return 0;
}
