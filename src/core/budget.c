/*
 * The worker's memory budget (include/d2o/budget.h).
 */
#include "d2o/budget.h"

static size_t min_sz(size_t a, size_t b)
{
    return a < b ? a : b;
}

static size_t sub0(size_t a, size_t b)
{
    return a > b ? a - b : 0;
}

void d2o_budget_init(struct d2o_budget *b, size_t total)
{
    *b = (struct d2o_budget){0};
    b->total = total;
    b->hint = D2O_BUDGET_RECORD_MAX;
}

void d2o_budget_join(struct d2o_budget *b, struct d2o_budget_acct *a)
{
    *a = (struct d2o_budget_acct){0};
    a->b = b;
    a->est = D2O_BUDGET_RECORD_MAX;
    a->fresh = true;
    a->member = true;
    b->members++;
}

void d2o_budget_unwait(struct d2o_budget_acct *a)
{
    struct d2o_budget *b = a->b;

    if (!a->waiting) {
        return;
    }
    if (a->wprev) {
        a->wprev->wnext = a->wnext;
    } else {
        b->whead = a->wnext;
    }
    if (a->wnext) {
        a->wnext->wprev = a->wprev;
    } else {
        b->wtail = a->wprev;
    }
    a->wprev = a->wnext = NULL;
    b->owed -= a->need;
    a->need = 0;
    a->waiting = false;
}

void d2o_budget_leave(struct d2o_budget_acct *a)
{
    struct d2o_budget *b = a->b;

    if (!b || !a->member) {
        return;
    }
    d2o_budget_unwait(a);
    d2o_budget_call_done(a);
    b->used -= a->charged;
    a->charged = 0;
    a->member = false;
    b->members--;
}

size_t d2o_budget_share(const struct d2o_budget *b)
{
    return b->members ? b->total / b->members : b->total;
}

size_t d2o_budget_response_bytes(size_t limit, size_t est)
{
    size_t data = limit * est;

    if (data > D2O_BUDGET_CALL_DATA_MAX || (est && data / est != limit)) {
        data = D2O_BUDGET_CALL_DATA_MAX;
    }
    /* base64: 4 bytes per 3, rounded up */
    return (data + 2) / 3 * 4 + limit * D2O_BUDGET_RECORD_WIRE + D2O_BUDGET_RESPONSE_BASE;
}

size_t d2o_budget_receive_bytes(size_t limit, size_t est)
{
    size_t wire = d2o_budget_response_bytes(limit, est), data = limit * est, held;

    if (data > D2O_BUDGET_CALL_DATA_MAX || (est && data / est != limit)) {
        data = D2O_BUDGET_CALL_DATA_MAX;
    }
    /* the records once taken: raw bytes, documents no larger than them, and the per-record
     * overhead (d2o_budget_record_cost) */
    held = 2 * data + limit * D2O_BUDGET_RECORD_OVERHEAD;
    return held > wire ? held : wire;
}

size_t d2o_budget_call_cost(size_t limit, size_t est)
{
    return d2o_budget_receive_bytes(limit, est) +
           d2o_budget_response_bytes(limit, est) * D2O_BUDGET_ONCE_FACTOR;
}

/* What starting a call adds to what is used now: its receive buffer, and the growth of the
 * parse's share when its answer would be the largest in flight. */
static size_t admit_cost(const struct d2o_budget *b, size_t limit, size_t est)
{
    size_t wire = d2o_budget_response_bytes(limit, est);

    return d2o_budget_receive_bytes(limit, est) +
           sub0(wire, b->parse_wire) * D2O_BUDGET_ONCE_FACTOR;
}

size_t d2o_budget_record_cost(size_t raw_len, size_t doc_len)
{
    /* the cookie's copy of the raw record and its strings; the document in the sink's item (the
     * bulk request borrows it: no body copy is made); allocation headers */
    return raw_len + doc_len + D2O_BUDGET_RECORD_OVERHEAD;
}

/* The record size the member's next call is planned with: until its first answer, what the
 * latest answer with records on any shard showed (the shards of one stream carry the same
 * table's records); a wrong guess only costs a call whose answer passes its cap. */
static size_t plan_est(const struct d2o_budget_acct *a)
{
    return a->fresh ? min_sz(a->est, a->b->hint) : a->est;
}

/* Room this member may use now, before its fair-share limit. */
static size_t room(const struct d2o_budget_acct *a)
{
    const struct d2o_budget *b = a->b;
    size_t free = sub0(b->total, b->used);

    if (a->waiting && b->whead == a) {
        return free; /* first in the queue: everything free is its */
    }
    return sub0(free, b->owed - (a->waiting ? a->need : 0));
}

/*
 * Whether the member waits for its own records instead of making a call of limit records now:
 * its records that wait for their acknowledgement hold more than the call could reserve. They
 * come back within a bulk round trip, and the call then carries about twice the records. On
 * many shards, where a fair share holds a few dozen records, a call for the crumbs left beside
 * them costs what a full one costs (a request, a signature, an answer's envelope, on both sides)
 * for a handful of records.
 */
static bool waits_for_own(const struct d2o_budget_acct *a, size_t limit, size_t max_limit)
{
    return limit < max_limit && a->charged > d2o_budget_receive_bytes(limit, plan_est(a));
}

/* The Limit the member could ask for now, before waits_for_own. */
static size_t limit_now(const struct d2o_budget_acct *a, size_t max_limit)
{
    const struct d2o_budget *b = a->b;
    size_t share = d2o_budget_share(b), own = a->reserved + a->charged;
    size_t est = plan_est(a), min_cost = admit_cost(b, 1, est), avail, allow, lo, hi;
    bool others_wait = b->whead && !(b->whead == a && !a->wnext);

    if (!a->member || a->reserved || max_limit == 0) {
        return 0;
    }
    avail = room(a);
    allow = sub0(share, own);
    if (own == 0 && allow < min_cost) {
        allow = min_cost; /* a member holding nothing may always read one record */
    }
    if (!others_wait && allow < avail) {
        allow = avail; /* borrow what nobody waits for */
    }
    allow = min_sz(allow, avail);
    if (allow < min_cost) {
        return 0;
    }
    /* the largest Limit whose cost fits: cost grows with the Limit */
    lo = 1;
    hi = max_limit;
    while (lo < hi) {
        size_t mid = lo + (hi - lo + 1) / 2;

        if (admit_cost(b, mid, est) <= allow) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    return lo;
}

size_t d2o_budget_limit(const struct d2o_budget_acct *a, size_t max_limit)
{
    size_t lo = limit_now(a, max_limit);

    return lo && !waits_for_own(a, lo, max_limit) ? lo : 0;
}

void d2o_budget_wait(struct d2o_budget_acct *a, size_t max_limit)
{
    struct d2o_budget *b = a->b;
    size_t share = d2o_budget_share(b), own = a->reserved + a->charged;
    size_t need;

    if (a->waiting || !a->member) {
        return;
    }
    need = limit_now(a, max_limit);
    if (need && waits_for_own(a, need, max_limit)) {
        return; /* the room it waits for is its own: nobody else's is kept for it */
    }
    need = sub0(share, own);
    if (need < admit_cost(b, 1, plan_est(a))) {
        need = admit_cost(b, 1, plan_est(a));
    }
    need = min_sz(need, admit_cost(b, max_limit ? max_limit : 1, plan_est(a)));
    a->need = need;
    a->waiting = true;
    a->wprev = b->wtail;
    a->wnext = NULL;
    if (b->wtail) {
        b->wtail->wnext = a;
    } else {
        b->whead = a;
    }
    b->wtail = a;
    b->owed += need;
}

/* The parse's share follows the largest answer in flight. */
static void parse_share(struct d2o_budget *b, size_t wire)
{
    b->used = b->used - b->parse_wire * D2O_BUDGET_ONCE_FACTOR + wire * D2O_BUDGET_ONCE_FACTOR;
    b->parse_wire = wire;
}

size_t d2o_budget_reserve(struct d2o_budget_acct *a, size_t limit)
{
    struct d2o_budget *b = a->b;
    size_t wire, cost;

    a->est = plan_est(a);
    wire = d2o_budget_response_bytes(limit, a->est);
    cost = d2o_budget_receive_bytes(limit, a->est);

    d2o_budget_unwait(a);
    a->reserved += cost;
    b->used += cost;
    if (!a->wire) {
        a->fprev = NULL;
        a->fnext = b->fhead;
        if (b->fhead) {
            b->fhead->fprev = a;
        }
        b->fhead = a;
    }
    a->wire = wire > a->wire ? wire : a->wire;
    if (a->wire > b->parse_wire) {
        parse_share(b, a->wire);
    }
    if (b->used > b->peak_used) {
        b->peak_used = b->used;
    }
    return a->est >= D2O_BUDGET_RECORD_MAX ? 0 : wire;
}

void d2o_budget_call_done(struct d2o_budget_acct *a)
{
    struct d2o_budget *b = a->b;
    size_t gone;

    b->used -= a->reserved;
    a->reserved = 0;
    if (!a->wire) {
        return;
    }
    if (a->fprev) {
        a->fprev->fnext = a->fnext;
    } else {
        b->fhead = a->fnext;
    }
    if (a->fnext) {
        a->fnext->fprev = a->fprev;
    }
    a->fprev = a->fnext = NULL;
    gone = a->wire;
    a->wire = 0;
    if (gone >= b->parse_wire) {
        /* It was the largest in flight: find the largest left. The walk stops at one as large,
         * so with many calls of one size in flight (200 shards) it does not visit every call
         * on every answer. */
        const struct d2o_budget_acct *f;
        size_t wire = 0;

        for (f = b->fhead; f && wire < gone; f = f->fnext) {
            wire = f->wire > wire ? f->wire : wire;
        }
        parse_share(b, wire);
    }
}

void d2o_budget_saw(struct d2o_budget_acct *a, size_t max_len)
{
    size_t est;

    a->est = plan_est(a);
    a->fresh = false;
    est = a->est / 16;

    if (est < max_len) {
        est = max_len;
    }
    if (est < D2O_BUDGET_EST_MIN) {
        est = D2O_BUDGET_EST_MIN;
    }
    a->est = min_sz(est, D2O_BUDGET_RECORD_MAX);
    if (max_len) {
        a->b->hint = a->est;
    }
}

void d2o_budget_too_big(struct d2o_budget_acct *a)
{
    a->fresh = false;
    a->est = D2O_BUDGET_RECORD_MAX;
}

void d2o_budget_take(struct d2o_budget *b, size_t n)
{
    b->used += n;
    if (b->used > b->peak_used) {
        b->peak_used = b->used;
    }
}

void d2o_budget_give(struct d2o_budget *b, size_t n)
{
    b->used -= min_sz(n, b->used);
}

void d2o_budget_charge(struct d2o_budget_acct *a, size_t n)
{
    a->charged += n;
    d2o_budget_take(a->b, n);
}

void d2o_budget_release(struct d2o_budget_acct *a, size_t n)
{
    n = min_sz(n, a->charged);
    a->charged -= n;
    d2o_budget_give(a->b, n);
}
