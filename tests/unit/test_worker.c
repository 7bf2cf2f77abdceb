/*
 * The worker's pure parts: stop signals delivered twice (to the process group and forwarded by
 * the supervisor) are one request, whatever order and delay they come in.
 */
#include <stdbool.h>
#include <string.h>

#include "d2o/worker.h"
#include "d2o_test.h"

START_TEST(a_group_signal_is_one_request_however_late_its_forwarded_copy)
{
    struct d2o_stop_copies s;

    memset(&s, 0, sizeof(s));
    /* kill -TERM -PGID from pid 500: the worker's own copy, then the supervisor's */
    ck_assert(d2o_stop_signal_is_new(&s, false, 500));
    ck_assert(!d2o_stop_signal_is_new(&s, true, 500));
    /* the same again: a second request, with its own pair */
    ck_assert(d2o_stop_signal_is_new(&s, false, 500));
    ck_assert(!d2o_stop_signal_is_new(&s, true, 500));
    /* Ctrl-C: the kernel sends both (pid 0), the forwarded copy first this time */
    ck_assert(d2o_stop_signal_is_new(&s, true, 0));
    ck_assert(!d2o_stop_signal_is_new(&s, false, 0));
    ck_assert_uint_eq(s.n_direct + s.n_forwarded, 0);
}
END_TEST

START_TEST(a_signal_to_the_supervisor_alone_counts_each_time)
{
    struct d2o_stop_copies s;

    memset(&s, 0, sizeof(s));
    /* docker stop, twice: only forwarded copies */
    ck_assert(d2o_stop_signal_is_new(&s, true, 0));
    ck_assert(d2o_stop_signal_is_new(&s, true, 0));
    /* two group signals whose direct copies merged into one pending SIGTERM: two requests */
    memset(&s, 0, sizeof(s));
    ck_assert(d2o_stop_signal_is_new(&s, false, 7));
    ck_assert(!d2o_stop_signal_is_new(&s, true, 7));
    ck_assert(d2o_stop_signal_is_new(&s, true, 7));
    /* a copy from another sender is not a pair */
    memset(&s, 0, sizeof(s));
    ck_assert(d2o_stop_signal_is_new(&s, false, 7));
    ck_assert(d2o_stop_signal_is_new(&s, true, 8));
}
END_TEST

START_TEST(unpaired_copies_are_bounded)
{
    struct d2o_stop_copies s;
    int i;

    memset(&s, 0, sizeof(s));
    for (i = 0; i < 20; i++) {
        ck_assert(d2o_stop_signal_is_new(&s, false, i));
    }
    ck_assert_uint_eq(s.n_direct, 8);
    ck_assert(d2o_stop_signal_is_new(&s, true, 0)); /* the oldest made room */
    ck_assert(!d2o_stop_signal_is_new(&s, true, 19));
}
END_TEST

Suite *d2o_test_suite(void)
{
    Suite *s = suite_create("worker");
    TCase *tc = tcase_create("stop signals");

    tcase_add_test(tc, a_group_signal_is_one_request_however_late_its_forwarded_copy);
    tcase_add_test(tc, a_signal_to_the_supervisor_alone_counts_each_time);
    tcase_add_test(tc, unpaired_copies_are_bounded);
    suite_add_tcase(s, tc);
    return s;
}
