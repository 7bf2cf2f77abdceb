/* The pure parts of the DLQ module: checkpoint ordering and refusing malformed positions. */
#include <errno.h>
#include <string.h>

#include "d2o/dlq.h"
#include "d2o_test.h"

START_TEST(checkpoint_positions_order)
{
    ck_assert_int_lt(d2o_checkpoint_cmp("TRIM_HORIZON", "0"), 0);
    ck_assert_int_lt(d2o_checkpoint_cmp("LATEST", "1"), 0);
    ck_assert_int_lt(d2o_checkpoint_cmp("AT_TIMESTAMP",
                                        "49590338271490256608559692538361571095921575989136588898"),
                     0);
    ck_assert_int_eq(d2o_checkpoint_cmp("TRIM_HORIZON", "LATEST"), 0);
    ck_assert_int_lt(d2o_checkpoint_cmp("9", "10"), 0);
    ck_assert_int_gt(d2o_checkpoint_cmp("49590338271490256608559692538361571095921575989136588899",
                                        "49590338271490256608559692538361571095921575989136588898"),
                     0);
    ck_assert_int_eq(d2o_checkpoint_cmp("123", "123"), 0);
    ck_assert_int_gt(d2o_checkpoint_cmp("SHARD_END", "99999999999999999999999999999999999999999"),
                     0);
    ck_assert_int_eq(d2o_checkpoint_cmp("SHARD_END", "SHARD_END"), 0);
}
END_TEST

START_TEST(malformed_positions_are_refused_before_any_query)
{
    static const char *const bad[] = {"12a", "-5", "1.5", ""};
    struct d2o_checkpoint cp = {"app", "s", "shard", "w", 1, NULL};
    char err[256];
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cp.position = bad[i];
        err[0] = '\0';
        /* No connection is needed: the position is checked first. */
        ck_assert_int_eq(d2o_dlq_commit(NULL, &cp, NULL, 0, err, sizeof(err)), -EINVAL);
        ck_assert_ptr_nonnull(strstr(err, "is not a sequence number or SHARD_END"));
    }
    cp.position = NULL;
    ck_assert_int_eq(d2o_dlq_commit(NULL, &cp, NULL, 0, err, sizeof(err)), -EINVAL);
}
END_TEST

Suite *d2o_test_suite(void)
{
    Suite *s = suite_create("dlq");
    TCase *tc = tcase_create("dlq");

    tcase_add_test(tc, checkpoint_positions_order);
    tcase_add_test(tc, malformed_positions_are_refused_before_any_query);
    suite_add_tcase(s, tc);
    return s;
}
