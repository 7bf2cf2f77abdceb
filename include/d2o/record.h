/*
 * DynamoDB change records as the table's Kinesis Data Streams destination writes them: the
 * decoded Data of one Kinesis record, a JSON object with eventName, tableName and a dynamodb
 * object (Keys, NewImage, OldImage, ApproximateCreationDateTime and its precision, SizeBytes).
 *
 * Fields are read by name (their order is not stable); unknown fields are ignored. A record that
 * lacks what it needs is refused with a reason naming the field by its path, and the caller
 * dead-letters it with its raw bytes.
 */
#ifndef D2O_RECORD_H
#define D2O_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct d2o_jdoc;
struct d2o_jnode;

enum d2o_event { D2O_EVENT_INSERT = 0, D2O_EVENT_MODIFY = 1, D2O_EVENT_REMOVE = 2 };

/* SECOND: records of a DynamoDB stream read directly (src/ddbstreams). */
enum d2o_precision {
    D2O_PRECISION_MILLISECOND = 0,
    D2O_PRECISION_MICROSECOND = 1,
    D2O_PRECISION_SECOND = 2,
};

/* Error class of records refused by d2o_record_parse(), as stored in the dead-letter queue. */
#define D2O_RECORD_ERROR_CLASS "bad_record"

/*
 * One parsed change record. The nodes and strings are borrowed from root (src/core/jdoc.c), which
 * the record owns; they also point into the parsed bytes, which must outlive the record.
 * d2o_record_free() releases everything (the document is kept for the next record's parse).
 */
struct d2o_record {
    struct d2o_jdoc *root;
    enum d2o_event event;
    const char *table;
    const char *event_id;              /* NULL if absent */
    const struct d2o_jnode *keys;      /* dynamodb.Keys: always present */
    const struct d2o_jnode *new_image; /* INSERT and MODIFY; NULL for REMOVE */
    const struct d2o_jnode *old_image; /* NULL if absent */
    int64_t approx_creation;           /* ApproximateCreationDateTime as received */
    enum d2o_precision precision;      /* from the field, or inferred from the magnitude */
    int64_t size_bytes;                /* -1 if absent */
    bool ttl_delete;                   /* REMOVE made by DynamoDB's TTL expiry */
};

/* Event names as they appear in records. */
const char *d2o_event_name(enum d2o_event e);

/*
 * Parses len bytes (need not be NUL-terminated, must stay unchanged until d2o_record_free()):
 * JSON as src/core/jdoc.c accepts it, so an object with a key twice or nested deeper than 80
 * levels is refused too. Returns 0 and fills out, or -EINVAL with
 * errstr naming the missing or malformed field (e.g. "dynamodb.NewImage is missing (eventName
 * MODIFY)"), or -ENOMEM. On error out holds nothing to free.
 */
__attribute__((warn_unused_result)) int d2o_record_parse(const char *data, size_t len,
                                                         struct d2o_record *out, char *errstr,
                                                         size_t errstr_size);

/* Releases what d2o_record_parse() filled in. NULL-safe, idempotent. */
void d2o_record_free(struct d2o_record *r);

#endif
