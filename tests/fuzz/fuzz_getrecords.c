/* libFuzzer target: GetRecords and GetShardIterator responses (and error bodies) through the
 * pure parsers. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "d2o/kinesis.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct d2o_kinesis_records r;
    struct d2o_kinesis_err err;
    char *it = NULL;
    size_t i;

    if (d2o_kinesis_parse_get_records((const char *)data, size, &r, &err) == 0) {
        for (i = 0; i < r.n_records; i++) {
            /* invariants the reader relies on */
            if (!d2o_kinesis_seq_valid(r.records[i].sequence_number) ||
                !r.records[i].partition_key || !r.records[i].data ||
                r.records[i].data[r.records[i].data_len] != '\0') {
                abort();
            }
            if (i > 0) {
                (void)d2o_kinesis_seq_cmp(r.records[i - 1].sequence_number,
                                          r.records[i].sequence_number);
            }
        }
        for (i = 0; i < r.n_children; i++) {
            if (r.children[i].n_parents == 0 || !r.children[i].shard_id) {
                abort();
            }
        }
        d2o_kinesis_records_free(&r);
    } else if (err.message[0] == '\0' || r.n_records != 0) {
        abort(); /* failures always explain themselves and leave nothing behind */
    }
    /* an iterator is never "" (no iterator is NULL); a failure leaves none */
    if (d2o_kinesis_parse_shard_iterator((const char *)data, size, &it, &err) == 0) {
        if (it && !*it) {
            abort();
        }
    } else if (it || err.message[0] == '\0') {
        abort();
    }
    free(it);
    d2o_kinesis_parse_error(400, NULL, (const char *)data, size, &err);
    if (err.message[0] == '\0') {
        abort();
    }
    return 0;
}
