/* The worker's memory budget: the cost model, the fair share, the queue and the bound. */
#include <stdio.h>
#include <stdlib.h>

#include "d2o/budget.h"
#include "d2o/rand.h"
#include "d2o_test.h"

#define MiB ((size_t)1 << 20)

START_TEST(an_answer_is_bounded_by_limit_and_by_ten_mib)
{
    /* 100 records of 1000 bytes: 100 000 data bytes in base64, plus the per-record and the
     * per-answer overhead */
    ck_assert_uint_eq(d2o_budget_response_bytes(100, 1000),
                      133336 + 100 * D2O_BUDGET_RECORD_WIRE + D2O_BUDGET_RESPONSE_BASE);
    /* 10 000 records of 1 MiB: no more than 10 MiB of data */
    ck_assert_uint_eq(d2o_budget_response_bytes(10000, MiB), (10 * MiB + 2) / 3 * 4 +
                                                                 10000 * D2O_BUDGET_RECORD_WIRE +
                                                                 D2O_BUDGET_RESPONSE_BASE);
    ck_assert_uint_eq(d2o_budget_call_cost(7, 3000),
                      d2o_budget_receive_bytes(7, 3000) +
                          d2o_budget_response_bytes(7, 3000) * D2O_BUDGET_ONCE_FACTOR);
    ck_assert_uint_eq(d2o_budget_record_cost(1000, 600), 1000 + 600 + 512);
}
END_TEST

START_TEST(a_lone_shard_borrows_the_whole_budget)
{
    struct d2o_budget b;
    struct d2o_budget_acct a[4];
    size_t lim, i;

    d2o_budget_init(&b, 32 * MiB);
    for (i = 0; i < 4; i++) {
        d2o_budget_join(&b, &a[i]);
    }
    ck_assert_uint_eq(d2o_budget_share(&b), 8 * MiB);
    /* from 1 MiB down to a sixteenth per answer to the records' size: 3 answers */
    for (i = 0; i < 3; i++) {
        d2o_budget_saw(&a[0], 1000);
    }
    ck_assert_uint_eq(a[0].est, 1000);
    /* nobody waits: the whole budget, not 8 MiB */
    lim = d2o_budget_limit(&a[0], 10000);
    ck_assert_uint_le(d2o_budget_call_cost(lim, 1000), 32 * MiB);
    ck_assert_uint_gt(d2o_budget_call_cost(lim + 1, 1000), 32 * MiB);
    ck_assert_uint_gt(d2o_budget_call_cost(lim, 1000), 8 * MiB);
    /* and never more than asked for */
    ck_assert_uint_eq(d2o_budget_limit(&a[0], 10), 10);
    /* one call at a time */
    (void)d2o_budget_reserve(&a[0], lim);
    ck_assert_uint_eq(d2o_budget_limit(&a[0], 10000), 0);
    ck_assert_uint_eq(b.used, d2o_budget_call_cost(lim, 1000));
    d2o_budget_call_done(&a[0]);
    ck_assert_uint_eq(b.used, 0);
    for (i = 0; i < 4; i++) {
        d2o_budget_leave(&a[i]);
    }
    ck_assert_uint_eq(b.members, 0);
}
END_TEST

START_TEST(a_hot_shard_cannot_starve_a_waiting_one)
{
    struct d2o_budget b;
    struct d2o_budget_acct hot, cold;
    size_t lim;

    d2o_budget_init(&b, 32 * MiB);
    d2o_budget_join(&b, &hot);
    d2o_budget_join(&b, &cold);
    hot.est = cold.est = 1000;
    /* the hot shard holds 30 MiB of records in the sink, far above its 16 MiB share */
    d2o_budget_charge(&hot, 30 * MiB);
    /* the cold shard finds too little room and waits */
    lim = d2o_budget_limit(&cold, 10000);
    ck_assert_uint_gt(lim, 0); /* 2 MiB free: a small call fits */
    d2o_budget_charge(&hot, 2 * MiB - 1000);
    ck_assert_uint_eq(d2o_budget_limit(&cold, 10000), 0);
    d2o_budget_wait(&cold, 10000);
    ck_assert(cold.waiting);
    /* the hot shard's writes are acknowledged: the room goes to the waiting shard, not back to
     * the hot one, which is above its share while someone waits */
    d2o_budget_release(&hot, 10 * MiB);
    ck_assert_uint_eq(d2o_budget_limit(&hot, 10000), 0);
    lim = d2o_budget_limit(&cold, 10000);
    ck_assert_uint_gt(d2o_budget_call_cost(lim, 1000), 10 * MiB - d2o_budget_call_cost(1, 1000));
    (void)d2o_budget_reserve(&cold, lim);
    ck_assert(!cold.waiting);
    ck_assert_uint_eq(b.owed, 0);
    ck_assert_uint_le(b.used, b.total);
    d2o_budget_leave(&hot);
    d2o_budget_leave(&cold);
    ck_assert_uint_eq(b.used, 0);
}
END_TEST

START_TEST(a_shard_holding_nothing_may_read_one_large_record)
{
    struct d2o_budget b;
    struct d2o_budget_acct a[200];
    size_t wire = d2o_budget_response_bytes(1, D2O_BUDGET_RECORD_MAX), i, n = 0;
    size_t recv = d2o_budget_receive_bytes(1, D2O_BUDGET_RECORD_MAX);

    d2o_budget_init(&b, 32 * MiB);
    for (i = 0; i < 200; i++) {
        d2o_budget_join(&b, &a[i]);
    }
    /* 164 KiB shares; a new shard plans with 1 MiB records (8 MiB for the first call) */
    ck_assert_uint_lt(d2o_budget_share(&b), d2o_budget_call_cost(1, D2O_BUDGET_RECORD_MAX));
    /* one record each (no cap: the largest record), as many as fit */
    while (n < 200 && d2o_budget_limit(&a[n], 10000) >= 1) {
        ck_assert_uint_eq(d2o_budget_reserve(&a[n], 1), 0);
        ck_assert_uint_le(b.used, b.total);
        n++;
    }
    /* the answers are parsed one at a time: the parse's share is kept once, each further call
     * reserves only its receive buffer */
    ck_assert_uint_eq(b.used, wire * D2O_BUDGET_ONCE_FACTOR + n * recv);
    ck_assert_uint_eq(n, (32 * MiB - wire * D2O_BUDGET_ONCE_FACTOR) / recv);
    ck_assert_uint_gt(n, 3);
    /* the next waits; when room comes back it is its, not a newcomer's */
    ck_assert_uint_eq(d2o_budget_limit(&a[n], 10000), 0);
    d2o_budget_wait(&a[n], 10000);
    d2o_budget_call_done(&a[0]);
    ck_assert_uint_eq(d2o_budget_limit(&a[n + 1], 10000), 0);
    ck_assert_uint_ge(d2o_budget_limit(&a[n], 10000), 1);
    /* the parse's share stays while any answer is in flight, and goes with the last */
    ck_assert_uint_eq(b.parse_wire, wire);
    for (i = 1; i < n; i++) {
        d2o_budget_call_done(&a[i]);
    }
    ck_assert_uint_eq(b.parse_wire, 0);
    ck_assert_uint_eq(b.used, 0);
    for (i = 0; i < 200; i++) {
        d2o_budget_leave(&a[i]);
    }
}
END_TEST

START_TEST(the_parse_share_follows_the_largest_answer_in_flight)
{
    struct d2o_budget b;
    struct d2o_budget_acct big, small;
    size_t wb, ws, rb, rs;

    d2o_budget_init(&b, 64 * MiB);
    d2o_budget_join(&b, &big);
    d2o_budget_join(&b, &small);
    big.fresh = small.fresh = false;
    small.est = 1000;
    ws = d2o_budget_response_bytes(100, 1000);
    wb = d2o_budget_response_bytes(1, D2O_BUDGET_RECORD_MAX);
    rs = d2o_budget_receive_bytes(100, 1000);
    rb = d2o_budget_receive_bytes(1, D2O_BUDGET_RECORD_MAX);
    (void)d2o_budget_reserve(&small, 100);
    ck_assert_uint_eq(b.used, rs + ws * D2O_BUDGET_ONCE_FACTOR);
    (void)d2o_budget_reserve(&big, 1);
    ck_assert_uint_eq(b.used, rs + rb + wb * D2O_BUDGET_ONCE_FACTOR);
    /* the large answer is taken: the share shrinks to the small one still in flight */
    d2o_budget_call_done(&big);
    ck_assert_uint_eq(b.used, rs + ws * D2O_BUDGET_ONCE_FACTOR);
    d2o_budget_leave(&small); /* leaving returns the call's reservation and its share */
    ck_assert_uint_eq(b.used, 0);
    ck_assert_uint_eq(b.parse_wire, 0);
    d2o_budget_leave(&big);
}
END_TEST

/* Many calls in flight of a few sizes, finished in a scrambled order: after every answer the
 * parse's share is the largest wire size still in flight, and what is used adds up. */
START_TEST(the_parse_share_is_the_largest_in_flight_after_every_answer)
{
    struct d2o_budget b;
    struct d2o_budget_acct a[64];
    size_t wires[64], recvs[64], i, k;

    d2o_budget_init(&b, 1024 * MiB);
    for (i = 0; i < 64; i++) {
        d2o_budget_join(&b, &a[i]);
        a[i].fresh = false;
        a[i].est = i % 7 == 3 ? 4000 : 1000; /* one size for most, a larger one for some */
        (void)d2o_budget_reserve(&a[i], 100);
        wires[i] = d2o_budget_response_bytes(100, a[i].est);
        recvs[i] = d2o_budget_receive_bytes(100, a[i].est);
    }
    for (k = 0; k < 64; k++) {
        size_t j = (k * 37 + 11) % 64, max = 0, reserved = 0;

        d2o_budget_call_done(&a[j]);
        wires[j] = recvs[j] = 0;
        for (i = 0; i < 64; i++) {
            max = wires[i] > max ? wires[i] : max;
            reserved += recvs[i];
        }
        ck_assert_uint_eq(b.parse_wire, max);
        ck_assert_uint_eq(b.used, reserved + max * D2O_BUDGET_ONCE_FACTOR);
    }
    ck_assert_uint_eq(b.used, 0);
    for (i = 0; i < 64; i++) {
        d2o_budget_leave(&a[i]);
    }
}
END_TEST

START_TEST(a_new_shard_plans_with_what_the_others_showed)
{
    struct d2o_budget b;
    struct d2o_budget_acct a[3];
    size_t i;

    d2o_budget_init(&b, 32 * MiB);
    for (i = 0; i < 3; i++) {
        d2o_budget_join(&b, &a[i]);
    }
    /* an empty answer says nothing about the records' size */
    d2o_budget_saw(&a[0], 0);
    ck_assert_uint_eq(d2o_budget_reserve(&a[1], 1), 0); /* still planned for 1 MiB: no cap */
    d2o_budget_call_done(&a[1]);
    d2o_budget_saw(&a[0], 2000);
    d2o_budget_saw(&a[0], 2000);
    ck_assert_uint_eq(a[0].est, 2000);
    /* a shard that has had no answer plans with 2000 bytes (its answer is capped there) ... */
    ck_assert_uint_eq(d2o_budget_reserve(&a[2], 10), d2o_budget_response_bytes(10, 2000));
    d2o_budget_call_done(&a[2]);
    /* ... and one whose answer passed its cap plans with 1 MiB again */
    d2o_budget_too_big(&a[2]);
    ck_assert_uint_eq(d2o_budget_reserve(&a[2], 1), 0);
    d2o_budget_call_done(&a[2]);
    for (i = 0; i < 3; i++) {
        d2o_budget_leave(&a[i]);
    }
}
END_TEST

START_TEST(the_estimate_follows_the_records_and_caps_the_answer)
{
    struct d2o_budget b;
    struct d2o_budget_acct a;

    d2o_budget_init(&b, 64 * MiB);
    d2o_budget_join(&b, &a);
    ck_assert_uint_eq(a.est, D2O_BUDGET_RECORD_MAX);
    d2o_budget_saw(&a, 2000);
    ck_assert_uint_eq(a.est, D2O_BUDGET_RECORD_MAX / 16);
    d2o_budget_saw(&a, 2000);
    ck_assert_uint_eq(a.est, 4096);
    d2o_budget_saw(&a, 2000);
    ck_assert_uint_eq(a.est, 2000);
    d2o_budget_saw(&a, 0);
    ck_assert_uint_eq(a.est, D2O_BUDGET_EST_MIN);
    d2o_budget_saw(&a, 5000);
    ck_assert_uint_eq(a.est, 5000);
    /* below the largest record the answer is capped at what was reserved for */
    ck_assert_uint_eq(d2o_budget_reserve(&a, 10), d2o_budget_response_bytes(10, 5000));
    d2o_budget_call_done(&a);
    d2o_budget_too_big(&a);
    ck_assert_uint_eq(a.est, D2O_BUDGET_RECORD_MAX);
    d2o_budget_leave(&a);
}
END_TEST

/* Random shards plan, reserve, get answers of random sizes up to what they planned for, and
 * have their writes acknowledged: the budget is never passed, and no shard that wants to read
 * waits for ever. */
/*
 * On 200 shards a fair share holds a few dozen 1 KB records. A shard whose records still wait
 * for OpenSearch hold more than the call it could make beside them does not call for the
 * crumbs: it waits (without taking anyone's room in the queue) until they are acknowledged,
 * then calls for about twice the records.
 */
START_TEST(a_shard_waits_for_its_own_records_rather_than_call_for_crumbs)
{
    struct d2o_budget b;
    struct d2o_budget_acct a[200];
    size_t share, i, full, beside, rec = d2o_budget_record_cost(1250, 1000);

    d2o_budget_init(&b, 32 * MiB);
    for (i = 0; i < 200; i++) {
        d2o_budget_join(&b, &a[i]);
        a[i].est = 1250;
        a[i].fresh = false;
    }
    share = d2o_budget_share(&b);
    /* a call of 40 records in flight on another shard (the parse's share is kept for it), and
     * the others hold the rest: the shard's room is its share */
    (void)d2o_budget_reserve(&a[1], 40);
    for (i = 2; i < 200; i++) {
        d2o_budget_charge(&a[i], (b.total - share - b.used) / (200 - i));
    }
    ck_assert_uint_eq(b.total - b.used, share);
    full = d2o_budget_limit(&a[0], 1000);
    ck_assert_uint_gt(full, 30);
    ck_assert_uint_lt(full, 1000);
    /* two thirds of its share in records on their way to OpenSearch */
    d2o_budget_charge(&a[0], share / 3 * 2 / rec * rec);
    ck_assert_uint_eq(d2o_budget_limit(&a[0], 1000), 0);
    d2o_budget_wait(&a[0], 1000);
    ck_assert(!a[0].waiting);
    ck_assert_uint_eq(b.owed, 0);
    /* a call that takes all it asks for is made whatever the shard holds */
    ck_assert_uint_eq(d2o_budget_limit(&a[0], 5), 5);
    /* a third of its share: a call beside them is still worth making */
    d2o_budget_release(&a[0], a[0].charged);
    d2o_budget_charge(&a[0], share / 3 / rec * rec);
    beside = d2o_budget_limit(&a[0], 1000);
    ck_assert_uint_gt(beside, 0);
    ck_assert_uint_gt(full, beside);
    d2o_budget_release(&a[0], a[0].charged);
    ck_assert_uint_eq(d2o_budget_limit(&a[0], 1000), full);
    for (i = 0; i < 200; i++) {
        d2o_budget_leave(&a[i]);
    }
    ck_assert_uint_eq(b.used, 0);
}
END_TEST

/*
 * A call in flight reserves the larger of its response buffer and what its records will be
 * charged once taken (a record holds its document once: the bulk request borrows the sink's
 * copy), not both: on 200 shards a fair share's call carries about half again as many 1.25 KB
 * records as with twice the wire size.
 */
START_TEST(a_call_reserves_the_larger_of_its_buffer_and_its_records)
{
    struct d2o_budget b;
    struct d2o_budget_acct a[200];
    size_t i, lim;

    /* 1.25 KB records: what they are charged, 1.5 times the wire size, not 2 */
    ck_assert_uint_eq(d2o_budget_receive_bytes(100, 1250),
                      100 * d2o_budget_record_cost(1250, 1250));
    ck_assert_uint_lt(d2o_budget_receive_bytes(100, 1250) * 4,
                      d2o_budget_response_bytes(100, 1250) * 7);
    /* 1 MiB records, 10 MiB of data at most whatever the Limit */
    ck_assert_uint_eq(d2o_budget_receive_bytes(1, MiB), d2o_budget_record_cost(MiB, MiB));
    ck_assert_uint_eq(d2o_budget_receive_bytes(100, MiB),
                      20 * MiB + 100 * D2O_BUDGET_RECORD_OVERHEAD);
    /* one small record: the buffer and its fixed part are the larger */
    ck_assert_uint_eq(d2o_budget_receive_bytes(1, 600), d2o_budget_response_bytes(1, 600));
    d2o_budget_init(&b, 32 * MiB);
    for (i = 0; i < 200; i++) {
        d2o_budget_join(&b, &a[i]);
        a[i].est = 1250;
        a[i].fresh = false;
    }
    /* a larger call in flight on another shard (the parse's share is kept for it), and the
     * others hold the rest: the shard's room is its share */
    (void)d2o_budget_reserve(&a[1], 100);
    for (i = 2; i < 200; i++) {
        d2o_budget_charge(&a[i], (b.total - d2o_budget_share(&b) - b.used) / (200 - i));
    }
    ck_assert_uint_eq(b.total - b.used, d2o_budget_share(&b));
    lim = d2o_budget_limit(&a[0], 1000);
    /* its 164 KiB share: 38 records with twice the wire size reserved, 55 now */
    ck_assert_uint_eq(lim, 55);
    ck_assert_uint_le(d2o_budget_receive_bytes(lim, 1250), d2o_budget_share(&b));
    ck_assert_uint_gt(d2o_budget_receive_bytes(lim + 1, 1250), d2o_budget_share(&b));
    for (i = 0; i < 200; i++) {
        d2o_budget_leave(&a[i]);
    }
    ck_assert_uint_eq(b.used, 0);
}
END_TEST

START_TEST(random_shards_never_pass_the_budget_and_all_progress)
{
    enum { N = 50, ROUNDS = 20000 };
    struct d2o_budget b;
    struct d2o_budget_acct a[N];
    size_t held[N] = {0}, calls[N] = {0}, waited[N] = {0}, limit[N] = {0};
    size_t longest_wait = 0, i, r;

    d2o_rand_seed_fixed(15);
    d2o_budget_init(&b, 32 * MiB);
    for (i = 0; i < N; i++) {
        d2o_budget_join(&b, &a[i]);
    }
    for (r = 0; r < ROUNDS; r++) {
        i = d2o_rand_below(N);
        if (a[i].reserved) {
            /* the answer: some records, each charged what it keeps */
            size_t est = a[i].est, n = d2o_rand_below(limit[i] + 1), len = 0, k;

            d2o_budget_call_done(&a[i]);
            for (k = 0; k < n; k++) {
                size_t rl = 1 + d2o_rand_below(est);
                size_t c = d2o_budget_record_cost(rl, rl);

                d2o_budget_charge(&a[i], c);
                held[i] += c;
                len = rl > len ? rl : len;
            }
            d2o_budget_saw(&a[i], len);
        } else if (held[i] && d2o_rand_below(2)) {
            d2o_budget_release(&a[i], held[i]);
            held[i] = 0;
        } else {
            limit[i] = d2o_budget_limit(&a[i], 10000);
            if (limit[i]) {
                (void)d2o_budget_reserve(&a[i], limit[i]);
                calls[i]++;
                waited[i] = 0;
            } else {
                d2o_budget_wait(&a[i], 10000);
                waited[i]++;
                longest_wait = waited[i] > longest_wait ? waited[i] : longest_wait;
            }
        }
        ck_assert_uint_le(b.used, b.total);
    }
    for (i = 0; i < N; i++) {
        ck_assert_msg(calls[i] > 20, "shard %zu made only %zu calls", i, calls[i]);
    }
    ck_assert_msg(longest_wait < 200, "a shard waited %zu of its turns", longest_wait);
    for (i = 0; i < N; i++) {
        d2o_budget_leave(&a[i]);
    }
    ck_assert_uint_eq(b.used, 0);
    ck_assert_uint_eq(b.owed, 0);
}
END_TEST

Suite *d2o_test_suite(void)
{
    Suite *s = suite_create("budget");
    TCase *tc = tcase_create("budget");

    /* the random test draws every record of up to 10 000 a call: seconds under a sanitizer on a
     * busy machine */
    tcase_set_timeout(tc, 30);

    tcase_add_test(tc, an_answer_is_bounded_by_limit_and_by_ten_mib);
    tcase_add_test(tc, a_lone_shard_borrows_the_whole_budget);
    tcase_add_test(tc, a_hot_shard_cannot_starve_a_waiting_one);
    tcase_add_test(tc, a_shard_holding_nothing_may_read_one_large_record);
    tcase_add_test(tc, the_parse_share_follows_the_largest_answer_in_flight);
    tcase_add_test(tc, the_parse_share_is_the_largest_in_flight_after_every_answer);
    tcase_add_test(tc, a_new_shard_plans_with_what_the_others_showed);
    tcase_add_test(tc, the_estimate_follows_the_records_and_caps_the_answer);
    tcase_add_test(tc, a_shard_waits_for_its_own_records_rather_than_call_for_crumbs);
    tcase_add_test(tc, a_call_reserves_the_larger_of_its_buffer_and_its_records);
    tcase_add_test(tc, random_shards_never_pass_the_budget_and_all_progress);
    suite_add_tcase(s, tc);
    return s;
}
