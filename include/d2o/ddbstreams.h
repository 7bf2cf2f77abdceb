/*
 * DynamoDB Streams client: the Kinesis-shaped API of a table's own change stream (JSON 1.0,
 * X-Amz-Target DynamoDBStreams_20120810.*, SigV4 service "dynamodb"), as a dialect of the Kinesis
 * client (d2o_kinesis_new_dialect): the same HTTP layer, classifier, retries and async calls, and
 * the same result structs, so a worker reads either source through one interface.
 *
 * What the dialect maps:
 *   GetRecords       Records[] -> d2o_kinesis_record: sequence_number = dynamodb.SequenceNumber,
 *                    data = the stream record normalised to the change-record format of
 *                    src/record ("tableName" added from the stream ARN, ApproximateCreationDateTime
 *                    in whole epoch seconds with precision "SECOND"), arrival_ms = that second.
 *                    No NextShardIterator: the shard is closed and read to its end (no child
 *                    list in the answer; children come from DescribeStream).
 *   GetShardIterator StreamArn, ShardId, ShardIteratorType, SequenceNumber (no AT_TIMESTAMP).
 *   list shards      DescribeStream, a page at a time: ExclusiveStartShardId = the previous page's
 *                    LastEvaluatedShardId (returned as next_token). Shards have no hash range.
 *
 * Errors as in kinesis.h. TrimmedDataAccessException (records older than the 24-hour retention)
 * is PERMANENT for the request that asked for them; the caller starts again at TRIM_HORIZON or
 * finishes the shard. ResourceNotFoundException: the stream ARN is gone (Streams turned off, or
 * turned off and on again under a new ARN).
 *
 * @process worker (borrows the process's struct d2o_http; create it after fork()).
 */
#ifndef D2O_DDBSTREAMS_H
#define D2O_DDBSTREAMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "d2o/kinesis.h"

/* GetRecords returns at most this many records per call. */
#define D2O_DDBSTREAMS_GET_RECORDS_MAX 1000

extern const struct d2o_kinesis_dialect d2o_ddbstreams_dialect;

/* What DescribeStream says about the stream itself. Free with d2o_ddbstreams_info_free(). */
struct d2o_ddbstreams_info {
    char *stream_arn;
    char *stream_status; /* ENABLING, ENABLED, DISABLING, DISABLED */
    char *view_type;     /* NEW_IMAGE, OLD_IMAGE, NEW_AND_OLD_IMAGES, KEYS_ONLY */
    char *table_name;
};

/* One stream of ListStreams. */
struct d2o_ddbstreams_stream {
    char *stream_arn;
    char *table_name;
    char *stream_label;
};

/* One ListStreams page. Free with d2o_ddbstreams_list_free(). */
struct d2o_ddbstreams_list {
    struct d2o_ddbstreams_stream *streams;
    size_t n_streams;
    char *last_evaluated_arn; /* NULL on the last page */
};

/* ---- pure parsers (ddbstreams_parse.c); same contract as the kinesis.h parsers ---- */

/* true if s is 1 to 129 decimal digits. Unlike Kinesis, leading zeros are allowed: DynamoDB
 * Local pads its sequence numbers to 21 digits (AWS does not pad; within one stream they all
 * have the same form, so d2o_kinesis_seq_cmp still orders them). */
bool d2o_ddbstreams_seq_valid(const char *s);

/*
 * The table name in a stream ARN (arn:aws:dynamodb:<region>:<account>:table/<name>/stream/<label>)
 * copied to out. Returns 0 or -EINVAL (not a stream ARN, or out too small).
 */
int d2o_ddbstreams_arn_table(const char *arn, char *out, size_t out_size);

/* GetRecords; stream_arn names the table of every record (its "tableName"). */
int d2o_ddbstreams_parse_get_records(const char *body, size_t len, const char *stream_arn,
                                     struct d2o_kinesis_records *out, struct d2o_kinesis_err *err);
/* DescribeStream: one page of shards (next_token = LastEvaluatedShardId) and, if info is not
 * NULL, the stream's own fields. */
int d2o_ddbstreams_parse_describe_stream(const char *body, size_t len,
                                         struct d2o_kinesis_shards *out,
                                         struct d2o_ddbstreams_info *info,
                                         struct d2o_kinesis_err *err);
int d2o_ddbstreams_parse_list_streams(const char *body, size_t len, struct d2o_ddbstreams_list *out,
                                      struct d2o_kinesis_err *err);

void d2o_ddbstreams_info_free(struct d2o_ddbstreams_info *i);
void d2o_ddbstreams_list_free(struct d2o_ddbstreams_list *l);

/*
 * The external version of the next record of a shard: the greater of prev + 1 and the record's
 * ApproximateCreationDateTime in microseconds (acdt_s x 10^6). prev is the version of the record
 * before it in the shard's lineage (the shard's, or its parent's final checkpoint; 0 for none).
 * Strictly increasing along a lineage, so a later change of an item always outranks an earlier
 * one, and a function of (prev, record), so reading again from a checkpoint gives every record
 * the version it had (docs/architecture.md, "Versions of a DynamoDB stream").
 */
int64_t d2o_ddbstreams_version(int64_t prev, int64_t acdt_s);

/* ---- client (ddbstreams.c) ---- */

/*
 * A client for region at endpoint (NULL/"" = https://streams.dynamodb.<region>.amazonaws.com),
 * reading stream_arn (may be NULL until it is known: then GetRecords cannot name the table).
 * Free with d2o_kinesis_free(). Returns NULL with errstr on failure.
 */
struct d2o_kinesis *d2o_ddbstreams_new(struct d2o_http *http, const char *region,
                                       const char *endpoint, const char *stream_arn,
                                       const struct d2o_aws_creds *creds, char *errstr,
                                       size_t errstr_size);

/*
 * The newest stream of table (ListStreams, every page; the greatest StreamLabel). *arn is
 * malloc'd. A table without a stream is D2O_KINESIS_E_FAILED with err->code
 * "ResourceNotFoundException", action PERMANENT. @blocking yes.
 */
__attribute__((warn_unused_result)) int d2o_ddbstreams_latest_arn(struct d2o_kinesis *k,
                                                                  const char *table, char **arn,
                                                                  struct d2o_kinesis_err *err);

/* DescribeStream's first page: the stream's own fields. @blocking yes. */
__attribute__((warn_unused_result)) int d2o_ddbstreams_describe(struct d2o_kinesis *k,
                                                                const char *stream_arn,
                                                                struct d2o_ddbstreams_info *out,
                                                                struct d2o_kinesis_err *err);

#endif
