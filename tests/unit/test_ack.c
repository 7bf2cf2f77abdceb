/* The acknowledgement low watermark, against a simple model on random completion orders. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "d2o/ack.h"
#include "d2o/rand.h"
#include "d2o_test.h"

START_TEST(an_unacknowledged_record_holds_the_watermark)
{
    struct d2o_ack *a = d2o_ack_new();
    uint64_t t[4];
    char *seq = NULL;
    void **payloads = NULL;
    size_t n_payloads = 0;
    int dlq_row = 42;

    ck_assert_int_eq(d2o_ack_push(a, "100", &t[0]), 0);
    ck_assert_int_eq(d2o_ack_push(a, "101", &t[1]), 0);
    ck_assert_int_eq(d2o_ack_push(a, "102", &t[2]), 0);
    ck_assert_int_eq(d2o_ack_push(a, "103", &t[3]), 0);
    ck_assert_int_eq(d2o_ack_complete(a, t[1], NULL), 0);
    ck_assert_int_eq(d2o_ack_complete(a, t[3], NULL), 0);
    ck_assert_int_eq(d2o_ack_advance(a, &seq, &payloads, &n_payloads), 0);
    ck_assert_ptr_null(seq);
    ck_assert_int_eq(d2o_ack_complete(a, t[0], NULL), 0);
    ck_assert_int_eq(d2o_ack_advance(a, &seq, &payloads, &n_payloads), 2);
    ck_assert_str_eq(seq, "101");
    ck_assert_int_eq(d2o_ack_complete(a, t[2], &dlq_row), 0);
    ck_assert_int_eq(d2o_ack_complete(a, t[2], NULL), -EALREADY);
    ck_assert_int_eq(d2o_ack_complete(a, t[0], NULL), -ENOENT);
    ck_assert_int_eq(d2o_ack_advance(a, &seq, &payloads, &n_payloads), 2);
    ck_assert_str_eq(seq, "103");
    ck_assert_uint_eq(n_payloads, 1);
    ck_assert_ptr_eq(payloads[0], &dlq_row);
    ck_assert_uint_eq(d2o_ack_pending(a), 0);
    free(seq);
    free(payloads);
    d2o_ack_free(a, NULL);
}
END_TEST

START_TEST(the_checkpoint_s_tag_is_its_record_s)
{
    struct d2o_ack *a = d2o_ack_new();
    uint64_t t[3];
    char *seq = NULL;
    void **payloads = NULL;
    size_t n = 0;

    ck_assert_int_eq(d2o_ack_last_tag(a), 0);
    ck_assert_int_eq(d2o_ack_push_tagged(a, "10", 100000000, &t[0]), 0);
    ck_assert_int_eq(d2o_ack_push_tagged(a, "11", 100000001, &t[1]), 0);
    ck_assert_int_eq(d2o_ack_push_tagged(a, "12", 101000000, &t[2]), 0);
    ck_assert_int_eq(d2o_ack_complete(a, t[2], NULL), 0);
    ck_assert_int_eq(d2o_ack_complete(a, t[1], NULL), 0);
    ck_assert_int_eq(d2o_ack_advance(a, &seq, &payloads, &n), 0); /* 10 holds it */
    ck_assert_int_eq(d2o_ack_last_tag(a), 0);
    ck_assert_int_eq(d2o_ack_complete(a, t[0], NULL), 0);
    ck_assert_int_eq(d2o_ack_advance(a, &seq, &payloads, &n), 3);
    ck_assert_str_eq(seq, "12");
    ck_assert_int_eq(d2o_ack_last_tag(a), 101000000);
    free(seq);
    free(payloads);
    d2o_ack_free(a, NULL);
}
END_TEST

START_TEST(a_record_taken_back_holds_nothing)
{
    struct d2o_ack *a = d2o_ack_new();
    uint64_t t[3];
    char *seq = NULL;
    void **payloads = NULL;
    size_t n_payloads = 0;

    ck_assert_int_eq(d2o_ack_push(a, "100", &t[0]), 0);
    ck_assert_int_eq(d2o_ack_push(a, "101", &t[1]), 0);
    /* only the last push, and only while it is not complete */
    ck_assert_int_eq(d2o_ack_unpush(a, t[0]), -ENOENT);
    ck_assert_int_eq(d2o_ack_unpush(a, t[1]), 0);
    ck_assert_int_eq(d2o_ack_unpush(a, t[1]), -ENOENT);
    ck_assert_uint_eq(d2o_ack_pending(a), 1);
    /* read again: the same record gets the next ticket */
    ck_assert_int_eq(d2o_ack_push(a, "101", &t[2]), 0);
    ck_assert(t[2] == t[1]);
    ck_assert_int_eq(d2o_ack_complete(a, t[2], NULL), 0);
    ck_assert_int_eq(d2o_ack_unpush(a, t[2]), -ENOENT);
    ck_assert_int_eq(d2o_ack_complete(a, t[0], NULL), 0);
    ck_assert_int_eq(d2o_ack_advance(a, &seq, &payloads, &n_payloads), 2);
    ck_assert_str_eq(seq, "101");
    free(seq);
    free(payloads);
    d2o_ack_free(a, NULL);
}
END_TEST

/*
 * 200 random completion orders against the model. The checks inside a round are collected and
 * asserted once per round: each Check assertion that passes is a write to the runner, and on a
 * loaded machine tens of thousands of them took longer than the test's timeout.
 */
START_TEST(random_completion_orders_match_the_model)
{
    int round;

    d2o_rand_seed_fixed(99);
    for (round = 0; round < 200; round++) {
        struct d2o_ack *a = d2o_ack_new();
        size_t n = 1 + d2o_rand_below(300), done = 0, i, popped_total = 0, model_watermark = 0;
        uint64_t *tickets = calloc(n, sizeof(*tickets));
        int *acked = calloc(n, sizeof(*acked));
        char seq[32], *wm = NULL, why[160] = "";
        void **payloads = NULL;
        size_t n_payloads = 0, expect_payloads = 0;

        ck_assert(a && tickets && acked);
        for (i = 0; i < n && !why[0]; i++) {
            snprintf(seq, sizeof(seq), "%zu", 1000 + i);
            if (d2o_ack_push(a, seq, &tickets[i]) != 0) {
                snprintf(why, sizeof(why), "push %zu failed", i);
            }
        }
        while (done < n && !why[0]) {
            size_t k = d2o_rand_below(n);
            int64_t popped;
            int r;

            if (acked[k]) {
                continue;
            }
            acked[k] = 1;
            done++;
            expect_payloads += k % 7 == 0;
            r = d2o_ack_complete(a, tickets[k], k % 7 == 0 ? &acked[k] : NULL);
            popped = d2o_ack_advance(a, &wm, &payloads, &n_payloads);
            if (r != 0 || popped < 0) {
                snprintf(why, sizeof(why), "complete %zu: %d, advance: %lld", k, r,
                         (long long)popped);
                break;
            }
            popped_total += (size_t)popped;
            while (model_watermark < n && acked[model_watermark]) {
                model_watermark++;
            }
            /* The watermark is exactly the acknowledged prefix, never further. */
            if (model_watermark > 0) {
                snprintf(seq, sizeof(seq), "%zu", 1000 + model_watermark - 1);
            }
            if (popped_total != model_watermark ||
                (model_watermark > 0 && (!wm || strcmp(wm, seq) != 0))) {
                snprintf(why, sizeof(why), "after %zu: %zu popped, watermark %s; model: %zu, %s", k,
                         popped_total, wm ? wm : "none", model_watermark,
                         model_watermark ? seq : "none");
            }
        }
        ck_assert_msg(!why[0], "round %d (%zu records): %s", round, n, why);
        ck_assert_uint_eq(n_payloads, expect_payloads);
        ck_assert_uint_eq(d2o_ack_pending(a), 0);
        free(wm);
        free(payloads);
        free(tickets);
        free(acked);
        d2o_ack_free(a, NULL);
    }
}
END_TEST

static int dropped;

static void drop(void *p)
{
    (void)p;
    dropped++;
}

START_TEST(free_hands_back_payloads)
{
    struct d2o_ack *a = d2o_ack_new();
    uint64_t t;
    int row;

    ck_assert_int_eq(d2o_ack_push(a, "1", &t), 0);
    ck_assert_int_eq(d2o_ack_push(a, "2", &t), 0);
    ck_assert_int_eq(d2o_ack_complete(a, t, &row), 0);
    d2o_ack_free(a, drop);
    ck_assert_int_eq(dropped, 1);
}
END_TEST

Suite *d2o_test_suite(void)
{
    Suite *s = suite_create("ack");
    TCase *tc = tcase_create("ack");

    /* Check's default is 4 s; a loaded machine (or a sanitizer build) needs more, and the
     * suite's meson timeout (60 s) still bounds it. */
    tcase_set_timeout(tc, 60);

    tcase_add_test(tc, an_unacknowledged_record_holds_the_watermark);
    tcase_add_test(tc, random_completion_orders_match_the_model);
    tcase_add_test(tc, a_record_taken_back_holds_nothing);
    tcase_add_test(tc, the_checkpoint_s_tag_is_its_record_s);
    tcase_add_test(tc, free_hands_back_payloads);
    suite_add_tcase(s, tc);
    return s;
}
