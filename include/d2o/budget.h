/*
 * A worker's memory budget: the bytes it may hold for records not yet checkpointed, shared
 * fairly by its shards.
 *
 * What is counted: a GetRecords call reserves, before it starts, what its answer can cost while
 * it is received and parsed (the response body, the parser's arena, the decoded records and the
 * copies the worker keeps); when the answer arrives the reservation is returned and each record
 * taken is charged what it really holds (its raw bytes for the dead-letter queue, its document
 * in the sink and in the bulk body) until its write is acknowledged; a dead-letter row is
 * charged until it is committed. A call starts only when the budget has room for its
 * reservation, so the sum of reservations and charges never passes the budget.
 *
 * How big an answer can be: GetRecords returns at most Limit records and at most 10 MiB of
 * data; a record from a DynamoDB table's stream destination is below 1 MiB (an item is at most
 * 400 KB, a change record carries two images). The call's Limit is sized from the largest
 * record the shard has shown lately (d2o_budget_acct.est, starting at 1 MiB and falling to a
 * sixteenth per answer towards what it sees), and the answer is capped on the wire at the
 * reservation's size (d2o_budget_response_bytes): an answer that would pass it is dropped while
 * it arrives, the estimate goes back to 1 MiB, and the same iterator is read again with a
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
/* Heap per byte of answer while it is parsed: the body buffer (up to twice the body while it
 * grows), the parser's arena (as large as the body), the decoded records, and the worker's own
 * copies. */
#define D2O_BUDGET_RESPONSE_FACTOR ((size_t)6)

struct d2o_budget;

struct d2o_budget_acct {
    struct d2o_budget *b;
    size_t reserved; /* for the call in flight */
    size_t charged;  /* held for records not yet acknowledged */
    size_t est;      /* record size (data bytes) the next call is planned with */
    size_t need;     /* while waiting: the room kept for this member */
    struct d2o_budget_acct *wprev, *wnext;
    bool waiting;
    bool member;
};

struct d2o_budget {
    size_t total;
    size_t used; /* reservations + charges of every member, and unattributed charges */
    size_t members;
    size_t owed;      /* sum of the waiting members' needs */
    size_t peak_used; /* the most used has been */
    struct d2o_budget_acct *whead, *wtail;
};

void d2o_budget_init(struct d2o_budget *b, size_t total);
/* A shard starts: it counts in the fair share. */
void d2o_budget_join(struct d2o_budget *b, struct d2o_budget_acct *a);
/* A shard is gone: everything it still holds is returned, and it leaves the queue. */
void d2o_budget_leave(struct d2o_budget_acct *a);
size_t d2o_budget_share(const struct d2o_budget *b);

/* Wire bytes a GetRecords answer of at most limit records of about est bytes can take. */
size_t d2o_budget_response_bytes(size_t limit, size_t est);
/* What a call with that Limit reserves. */
size_t d2o_budget_call_cost(size_t limit, size_t est);
/* What a record keeps until its write is acknowledged: raw bytes and its document, twice. */
size_t d2o_budget_record_cost(size_t raw_len, size_t doc_len);

/* The Limit (1..max_limit) the member's next GetRecords may ask for now, or 0 when the
 * budget has no room for it. Changes nothing. */
size_t d2o_budget_limit(const struct d2o_budget_acct *a, size_t max_limit);
/* No room now for a call of up to max_limit records: queue the member (once) so the room it
 * needs (up to its fair share) is kept for it. */
void d2o_budget_wait(struct d2o_budget_acct *a, size_t max_limit);
/* The member no longer waits (stopped, or held back by something else). */
void d2o_budget_unwait(struct d2o_budget_acct *a);
/* The call starts with this Limit: reserves its cost and leaves the queue. Returns the wire
 * cap for the answer (0: none, the estimate is already the largest record). */
size_t d2o_budget_reserve(struct d2o_budget_acct *a, size_t limit);
/* The call answered (or failed): its reservation is returned. */
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
