/*
 * From a DynamoDB change record to one OpenSearch bulk item.
 *
 *   image   AttributeValue maps become plain JSON: S string, N a JSON number with exactly the
 *           decimal text received (never through a double), B base64 text, BOOL, NULL, M object,
 *           L array, SS/NS/BS arrays (members in the order received). Up to 32 nesting levels.
 *   id      from dynamodb.Keys only: a hash key alone gives its text exactly; a composite key
 *           gives "<hash>|<range>" with '|' and '\' in either part escaped by a backslash.
 *           N keys use their canonical plain decimal ("1E+3", "1000" and "1000.0" give "1000");
 *           B keys their base64 text. Which attribute is the hash key comes from the key_schema
 *           setting; without it, the two key attributes are taken in byte order of their names.
 *   index   index_map entry for the table, else the table name in lower case.
 *   version external: ApproximateCreationDateTime in microseconds (milliseconds x 1000 for
 *           MILLISECOND precision), and nothing else: a function of the change alone, so a
 *           re-delivered record, a duplicate from the stream and a DLQ replay all carry the
 *           version of the first write. Two changes of one item with the same timestamp tie;
 *           docs/architecture.md ("Versions and ordering") gives the window.
 */
#ifndef D2O_DOCUMENT_H
#define D2O_DOCUMENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "d2o/buf.h"
#include "d2o/record.h"

struct d2o_config;
struct d2o_jnode;

/* DynamoDB's limit on nested attribute levels. */
#define D2O_MAX_NESTING 32

enum d2o_doc_action {
    D2O_DOC_INDEX = 0,  /* index the document (also tombstones) */
    D2O_DOC_DELETE = 1, /* delete the document */
    D2O_DOC_SKIP = 2,   /* nothing to write (a TTL delete with ttl_deletes = keep) */
};

/* One bulk item. Owned strings; free with d2o_doc_op_free(). */
struct d2o_doc_op {
    enum d2o_doc_action action;
    char *index;
    char *id;
    int64_t version;
    struct d2o_buf ndjson; /* the action line and, for INDEX, the document line; "" for SKIP */
    bool tombstone;
};

/* Error class of records that parse but cannot become a document. */
#define D2O_DOCUMENT_ERROR_CLASS "bad_document"

/*
 * Builds the bulk item for rec with the settings of conf (index_map, key_schema, delete_mode,
 * ttl_deletes). Returns 0, -EINVAL with errstr naming the attribute path and the problem, or
 * -ENOMEM. On error out holds nothing to free.
 */
__attribute__((warn_unused_result)) int d2o_doc_build(const struct d2o_record *rec,
                                                      const struct d2o_config *conf,
                                                      struct d2o_doc_op *out, char *errstr,
                                                      size_t errstr_size);
/*
 * The same with a given external version instead of one derived from the record: DLQ replay
 * re-sends a record with the version it had the first time, so a stale replay is a harmless 409.
 */
__attribute__((warn_unused_result)) int d2o_doc_build_at(const struct d2o_record *rec,
                                                         const struct d2o_config *conf,
                                                         int64_t version, struct d2o_doc_op *out,
                                                         char *errstr, size_t errstr_size);
void d2o_doc_op_free(struct d2o_doc_op *op);

/*
 * Appends an AttributeValue map (an image) as a plain JSON object. path names the image in
 * errors ("NewImage"). Returns 0, -EINVAL (errstr: "NewImage.tags.L[3].M.x: ...") or -ENOMEM.
 */
__attribute__((warn_unused_result)) int d2o_image_node_to_json(const struct d2o_jnode *image,
                                                               const char *path,
                                                               struct d2o_buf *out, char *errstr,
                                                               size_t errstr_size);

/*
 * Checks a DynamoDB number (up to 38 significant digits, magnitude 1E-130 to 9.99E+125) and
 * appends it as a JSON number token: the received text when it already is one, otherwise
 * the smallest change that makes it one ("+5" -> "5", ".5" -> "0.5", "5." -> "5", "007" -> "7").
 * Returns 0 or -EINVAL with the reason in why.
 */
__attribute__((warn_unused_result)) int
d2o_number_to_json(const char *n, size_t len, struct d2o_buf *out, char *why, size_t why_size);
/* Appends the canonical plain decimal of a valid DynamoDB number: no exponent, no leading or
 * trailing zeros, "0" for zero. Returns 0 or -EINVAL. */
__attribute__((warn_unused_result)) int d2o_number_canonical(const char *n, size_t len,
                                                             struct d2o_buf *out);

/*
 * Appends the document id for keys (dynamodb.Keys). hash_key/range_key name the key attributes
 * (NULL: order the attributes by name). Returns 0 or -EINVAL with errstr.
 */
__attribute__((warn_unused_result)) int d2o_doc_id_node(const struct d2o_jnode *keys,
                                                        const char *hash_key, const char *range_key,
                                                        struct d2o_buf *out, char *errstr,
                                                        size_t errstr_size);

/* The external version of a change (see the header comment): its ApproximateCreationDateTime in
 * microseconds. d2o_record_parse() has checked that the value fits. */
int64_t d2o_doc_version(int64_t approx_creation, enum d2o_precision precision);

/* True if name is a valid OpenSearch index name; otherwise false with the reason in why. */
bool d2o_index_name_valid(const char *name, char *why, size_t why_size);

#endif
