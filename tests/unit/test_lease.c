/* The balancing target: ceil(leases / live workers). */
#include "d2o/lease.h"
#include "d2o_test.h"

START_TEST(targets)
{
    ck_assert_int_eq(d2o_lease_target(0, 3), 0);
    ck_assert_int_eq(d2o_lease_target(8, 0), 8);
    ck_assert_int_eq(d2o_lease_target(8, 1), 8);
    ck_assert_int_eq(d2o_lease_target(8, 2), 4);
    ck_assert_int_eq(d2o_lease_target(8, 3), 3);
    ck_assert_int_eq(d2o_lease_target(8, 4), 2);
    ck_assert_int_eq(d2o_lease_target(3, 8), 1);
    ck_assert_int_eq(d2o_lease_target(64, 6), 11);
}
END_TEST

Suite *d2o_test_suite(void)
{
    Suite *s = suite_create("lease");
    TCase *tc = tcase_create("lease");

    tcase_add_test(tc, targets);
    suite_add_tcase(s, tc);
    return s;
}
