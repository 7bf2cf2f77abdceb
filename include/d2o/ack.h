/*
 * The acknowledgement low watermark of one shard.
 *
 * Records enter in shard order (d2o_ack_push) and complete in any order (d2o_ack_complete): bulk
 * items come back from concurrent requests and retries. The checkpoint may move only to the
 * highest sequence number such that it and every record before it are acknowledged: indexed,
 * stale, absent, skipped, or bound for the dead-letter queue. d2o_ack_advance() pops that prefix
 * and returns the new checkpoint and the dead-letter payloads of the popped records, which the
 * caller writes in the same transaction as the checkpoint (d2o_dlq_commit). A record that is not
 * yet acknowledged holds the checkpoint back, however many later records succeed.
 *
 * Pure bookkeeping, @process worker, one per shard.
 */
#ifndef D2O_ACK_H
#define D2O_ACK_H

#include <stddef.h>
#include <stdint.h>

struct d2o_ack;

struct d2o_ack *d2o_ack_new(void);
/* Frees the tracker; dead-letter payloads still inside are passed to drop (may be NULL). */
void d2o_ack_free(struct d2o_ack *a, void (*drop)(void *payload));

/*
 * Appends a record in shard order: its sequence number (copied). *ticket names it for
 * d2o_ack_complete(). Returns 0 or -ENOMEM.
 */
__attribute__((warn_unused_result)) int d2o_ack_push(struct d2o_ack *a, const char *seq,
                                                     uint64_t *ticket);

/* The same with a tag that travels with the record: d2o_ack_last_tag() gives the tag of the
 * record the checkpoint names (a DynamoDB stream's version counter, stored with it). */
__attribute__((warn_unused_result)) int d2o_ack_push_tagged(struct d2o_ack *a, const char *seq,
                                                            int64_t tag, uint64_t *ticket);

/*
 * Acknowledges a record. dlq_payload is NULL when the record is done, or the caller's dead-letter
 * row (ownership passes to the tracker until d2o_ack_advance hands it back). Returns 0, -ENOENT
 * for an unknown ticket, -EALREADY when it was acknowledged before.
 */
int d2o_ack_complete(struct d2o_ack *a, uint64_t ticket, void *dlq_payload);

/* Takes back the last pushed record (ticket must be it, not completed), when what should have
 * followed the push failed: the record will be read again. Returns 0 or -ENOENT. */
int d2o_ack_unpush(struct d2o_ack *a, uint64_t ticket);

/*
 * Pops the acknowledged prefix. Returns how many records were popped (0: the watermark did not
 * move; the outputs are untouched). Otherwise *seq (NULL, or the string an earlier call left
 * there, which is freed) receives the new checkpoint (malloc'd; the caller frees the last one),
 * and the popped dead-letter payloads are appended to (*payloads, *n_payloads) (a malloc'd array
 * the caller frees, with the payloads). A negative errno on allocation failure (nothing popped).
 */
int64_t d2o_ack_advance(struct d2o_ack *a, char **seq, void ***payloads, size_t *n_payloads);

/* The tag of the last record d2o_ack_advance() popped (0 before any, or untagged). */
int64_t d2o_ack_last_tag(const struct d2o_ack *a);

/* Records pushed and not yet popped. */
size_t d2o_ack_pending(const struct d2o_ack *a);

#endif
