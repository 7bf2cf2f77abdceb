/*
 * A worker's memory budget: the bytes it may hold for records not yet checkpointed, shared
 * fairly by its shards.
 *
 * What is counted: a GetRecords call reserves, before it starts, what its answer can cost while
 * it is received and then holds (d2o_budget_receive_bytes: the larger of the response buffer and
 * what its records will be charged once taken);
 * answers are parsed and taken one at a time, so the budget also keeps one parse's and one
 * take's worth (D2O_BUDGET_ONCE_FACTOR times the wire size) for the largest answer in flight,
 * once, not per call. The reservations are returned when the answer arrives; each record taken is
 * charged what it really holds (its raw bytes for the dead-letter queue, its document in the
 * sink's item, which the bulk request reads without a copy) until its write is acknowledged; a
 * dead-letter row is charged until it is committed. A call starts only when the budget has room for
 * its reservation (and for the growth of the once-share when its answer would be the largest in
 * flight), so the sum of reservations and charges never passes the budget.
 *
 * How big an answer can be: GetRecords returns at most Limit records and at most 10 MiB of
 * data; a record from a DynamoDB table's stream destination is below 1 MiB (an item is at most
 * 400 KB, a change record carries two images). The call's Limit is sized from the largest
 * record the shard has shown lately (d2o_budget_acct.est, falling to a sixteenth per answer
 * towards what it sees; a shard that has had no answer yet plans with what the latest answer
 * on any shard showed, and with 1 MiB before the first), and the answer is capped on the wire
 * at the reservation's size (d2o_budget_response_bytes): an answer that would pass it is dropped
 * while it arrives, the estimate goes back to 1 MiB, and the same iterator is read again with a
 * smaller Limit. So the bound holds whatever the records' sizes.
 *
 * Fairness: each member (a shard) may hold up to budget / members (its fair share); a member
 * that holds nothing may always make the smallest call (one record) even when that is more than
 * its share. A member that finds no room waits in a queue; the first in the queue may take all
 * the free room, and everyone else only what is left after the room the waiting members need. A
 * member may borrow beyond its share only while nobody waits. One hot shard therefore takes the
 * whole budget while the others are idle, and gives it back as its writes are acknowledged once
 * they need it.
 *
 * Call size: a member whose records waiting for their acknowledgement hold more than the call
 * it could make beside them would reserve waits for them instead (outside the queue: the room
 * is its own), and then makes one call of about twice the records. On 200 shards a fair share
 * holds a few dozen records, and calls of a handful each cost a request, a signature and an
 * answer's envelope per handful on both sides.
 *
 * Single-threaded, no allocation: members are embedded in the caller's structures.
 */
#ifndef D2O_BUDGET_H
#define D2O_BUDGET_H

#include <stdbool.h>
#include <stddef.h>

/* The largest record assumed (data bytes): a DynamoDB change record is below it. */
#define D2O_BUDGET_RECORD_MAX ((size_t)1 << 20)
/* The most data one GetRecords call returns. */
#define D2O_BUDGET_CALL_DATA_MAX ((size_t)10 << 20)
/* The smallest record size estimate a call is planned with. */
#define D2O_BUDGET_EST_MIN ((size_t)512)
/* Bytes of a GetRecords answer besides the base64 data: per record (sequence number, partition
 * key, timestamps, JSON punctuation), and once per answer (iterator, child shards). */
#define D2O_BUDGET_RECORD_WIRE ((size_t)320)
#define D2O_BUDGET_RESPONSE_BASE ((size_t)8192)
/* What a record holds besides its raw bytes and its document: the cookie's strings (sequence
 * number, partition key, table, index, id) and allocation headers. */
#define D2O_BUDGET_RECORD_OVERHEAD ((size_t)512)
/*
 * The reservation (docs/performance.md, "A worker's memory"):
 * RECEIVE, for every call in flight (d2o_budget_receive_bytes): the larger of
 *   - the response buffer, which the HTTP layer sizes to the body (the Content-Length exactly;
 *     without one, growth by doubling stops at the cap), so it holds at most the answer's cap,
 *     its wire size; and
 *   - the room its records are charged from once the answer is taken and the reservation
 *     returned: Limit records of the planned size, each its raw bytes, a document no larger
 *     than them (plain JSON is shorter than DynamoDB JSON, and the action line shorter than the
 *     change record's envelope) and D2O_BUDGET_RECORD_OVERHEAD (d2o_budget_record_cost). The
 *     bulk request reads the document from the sink's item without a copy, so a record holds
 *     it once. A document larger than its record is charged what it holds all the same.
 *   Both are never held at once for the same call except while its answer is taken, which the
 *   once-share covers. That is about 1.5 times the wire size for records of any size (1.4 for
 *   1 MiB records; for a call of one small record, the buffer); it was twice the wire size
 *   while the document was held twice, in the sink's item and in the bulk body.
 * And per byte of the largest answer's wire size:
 * PARSE, once, for the largest answer in flight: what parsing one answer holds besides its
 *   buffer. A Kinesis answer is read by a streaming parser (src/core/yjson.c) that holds only
 *   the records packed into one block (three quarters of the base64 size): below 1x. A
 *   DynamoDB stream's answer (at most 1 MB) is read into a reused arena document
 *   (src/core/jdoc.c) whose nodes can weigh several times the JSON they stand for; the factor
 *   does not cover that yet (docs/performance.md, "A worker's memory").
 * TAKE, once, for the same answer: the worker's copies of the records it takes from the answer
 *   while the answer is still held (raw bytes and the document: d2o_budget_record_cost, below
 *   2x the wire size); from then on they are charged per record.
 * Answers are parsed and taken one at a time (in the loop's thread), so PARSE and TAKE are kept
 * once for the largest answer in flight, not per call.
 */
#define D2O_BUDGET_PARSE_FACTOR ((size_t)2)
#define D2O_BUDGET_TAKE_FACTOR ((size_t)2)
#define D2O_BUDGET_ONCE_FACTOR (D2O_BUDGET_PARSE_FACTOR + D2O_BUDGET_TAKE_FACTOR)

struct d2o_budget;

struct d2o_budget_acct {
    struct d2o_budget *b;
    size_t reserved; /* for the call in flight */
    size_t charged;  /* held for records not yet acknowledged */
    size_t est;      /* record size (data bytes) the next call is planned with */
    size_t need;     /* while waiting: the room kept for this member */
    size_t wire;     /* the call in flight: its answer's largest wire size */
    struct d2o_budget_acct *wprev, *wnext;
    struct d2o_budget_acct *fprev, *fnext; /* the calls in flight */
    bool waiting;
    bool member;
    bool fresh; /* no answer yet: plans with the budget's hint */
};

struct d2o_budget {
    size_t total;
    size_t used; /* reservations + charges of every member, the parse's share, and unattributed
                  * charges */
    size_t parse_wire; /* the largest wire size of the calls in flight: ONCE times it is kept */
    size_t members;
    size_t owed;      /* sum of the waiting members' needs */
    size_t peak_used; /* the most used has been */
    size_t hint;      /* est after the latest answer with records: a fresh member plans with it */
    struct d2o_budget_acct *whead, *wtail;
    struct d2o_budget_acct *fhead; /* the calls in flight */
};

void d2o_budget_init(struct d2o_budget *b, size_t total);
/* A shard starts: it counts in the fair share. */
void d2o_budget_join(struct d2o_budget *b, struct d2o_budget_acct *a);
/* A shard is gone: everything it still holds is returned, and it leaves the queue. */
void d2o_budget_leave(struct d2o_budget_acct *a);
size_t d2o_budget_share(const struct d2o_budget *b);

/* Wire bytes a GetRecords answer of at most limit records of about est bytes can take. */
size_t d2o_budget_response_bytes(size_t limit, size_t est);
/* What a call with that Limit reserves while it is in flight: the larger of its response
 * buffer (its wire size) and what its records will be charged once taken (see RECEIVE above). */
size_t d2o_budget_receive_bytes(size_t limit, size_t est);
/* The most a call with that Limit can reserve: d2o_budget_receive_bytes and, when its answer
 * is the largest in flight, the parse's share (what the configuration check needs room for). */
size_t d2o_budget_call_cost(size_t limit, size_t est);
/* What a record keeps until its write is acknowledged: its raw bytes and its document (once:
 * the bulk request borrows the sink item's bytes), and 512 bytes of strings and headers. */
size_t d2o_budget_record_cost(size_t raw_len, size_t doc_len);

/* The Limit (1..max_limit) the member's next GetRecords may ask for now, or 0 when the
 * budget has no room for it or the member waits for its own records (see "Call size").
 * Changes nothing. */
size_t d2o_budget_limit(const struct d2o_budget_acct *a, size_t max_limit);
/* No room now for a call of up to max_limit records: queue the member (once) so the room it
 * needs (up to its fair share) is kept for it. A member that waits for its own records is not
 * queued. */
void d2o_budget_wait(struct d2o_budget_acct *a, size_t max_limit);
/* The member no longer waits (stopped, or held back by something else). */
void d2o_budget_unwait(struct d2o_budget_acct *a);
/* The call starts with this Limit: reserves its cost and leaves the queue. Returns the wire
 * cap for the answer (0: none, the estimate is already the largest record). */
size_t d2o_budget_reserve(struct d2o_budget_acct *a, size_t limit);
/* The call's answer has been taken (or the call failed): its reservation is returned, and the
 * parse's share shrinks to the largest answer still in flight. */
void d2o_budget_call_done(struct d2o_budget_acct *a);
/* An answer arrived whose largest record had max_len bytes (0: none). */
void d2o_budget_saw(struct d2o_budget_acct *a, size_t max_len);
/* An answer passed its cap: plan with the largest record again. */
void d2o_budget_too_big(struct d2o_budget_acct *a);
void d2o_budget_charge(struct d2o_budget_acct *a, size_t n);
void d2o_budget_release(struct d2o_budget_acct *a, size_t n);
/* Charges not tied to one member (dead-letter rows). */
void d2o_budget_take(struct d2o_budget *b, size_t n);
void d2o_budget_give(struct d2o_budget *b, size_t n);

#endif
