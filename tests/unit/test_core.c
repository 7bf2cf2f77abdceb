/* util.c, rand.c, clock.c */
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "d2o/clock.h"
#include "d2o/mem.h"
#include "d2o/rand.h"
#include "d2o/util.h"
#include "d2o_test.h"

START_TEST(parse_i64_accepts_and_refuses)
{
    int64_t v = 0;

    ck_assert_int_eq(d2o_parse_i64("42", 0, 100, &v), 0);
    ck_assert_int_eq(v, 42);
    ck_assert_int_eq(d2o_parse_i64("-9223372036854775808", INT64_MIN, INT64_MAX, &v), 0);
    ck_assert(v == INT64_MIN);
    ck_assert_int_eq(d2o_parse_i64("9223372036854775807", INT64_MIN, INT64_MAX, &v), 0);
    ck_assert(v == INT64_MAX);
    ck_assert_int_eq(d2o_parse_i64("9223372036854775808", INT64_MIN, INT64_MAX, &v), -ERANGE);
    ck_assert_int_eq(d2o_parse_i64("101", 0, 100, &v), -ERANGE);
    ck_assert_int_eq(d2o_parse_i64("", 0, 100, &v), -EINVAL);
    ck_assert_int_eq(d2o_parse_i64("-", 0, 100, &v), -EINVAL);
    ck_assert_int_eq(d2o_parse_i64(" 1", 0, 100, &v), -EINVAL);
    ck_assert_int_eq(d2o_parse_i64("1x", 0, 100, &v), -EINVAL);
    ck_assert_int_eq(d2o_parse_i64n("123abc", 3, 0, 1000, &v), 0);
    ck_assert_int_eq(v, 123);
}
END_TEST

START_TEST(strlcpy_cuts_and_terminates)
{
    char small[4];

    ck_assert_int_eq(d2o_strlcpy(small, "abcdef", sizeof(small)), -E2BIG);
    ck_assert_str_eq(small, "abc");
    ck_assert_int_eq(d2o_strlcpy(small, "ab", sizeof(small)), 0);
    ck_assert_str_eq(small, "ab");
}
END_TEST

START_TEST(rfc3339_formats_utc)
{
    char buf[40];

    ck_assert_int_eq(d2o_fmt_rfc3339_ms(1440938160123456LL, buf, sizeof(buf)), 0);
    ck_assert_str_eq(buf, "2015-08-30T12:36:00.123Z");
    ck_assert_int_eq(d2o_fmt_rfc3339_ms(0, buf, 5), -E2BIG);
}
END_TEST

START_TEST(edit_distance_counts)
{
    ck_assert_uint_eq(d2o_edit_distance("delete_mode", "delete_mode"), 0);
    ck_assert_uint_eq(d2o_edit_distance("delet_mode", "delete_mode"), 1);
    ck_assert_uint_eq(d2o_edit_distance("kitten", "sitting"), 3);
}
END_TEST

START_TEST(backoff_stays_within_cap)
{
    unsigned attempt;
    int i;
    int64_t max_seen = 0;

    d2o_rand_seed_fixed(7);
    for (attempt = 0; attempt < 100; attempt++) {
        for (i = 0; i < 50; i++) {
            int64_t d = d2o_backoff_ms(100, 30000, attempt);
            int64_t ceiling = attempt < 20 ? (100LL << attempt) : 30000;

            if (ceiling > 30000) {
                ceiling = 30000;
            }
            ck_assert(d >= 0);
            ck_assert(d <= ceiling);
            if (d > max_seen) {
                max_seen = d;
            }
        }
    }
    /* Full jitter over many draws reaches close to the cap. */
    ck_assert(max_seen > 25000);
    ck_assert_int_eq(d2o_backoff_ms(0, 100, 3), 0);
}
END_TEST

/* What a forked child draws first. */
static uint64_t child_draw(void)
{
    uint64_t v = 0;
    int fds[2];
    pid_t pid;

    ck_assert_int_eq(pipe(fds), 0);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        v = d2o_rand_u64();
        _exit(write(fds[1], &v, sizeof(v)) == (ssize_t)sizeof(v) ? 0 : 1);
    }
    close(fds[1]);
    ck_assert_int_eq(read(fds[0], &v, sizeof(v)), (ssize_t)sizeof(v));
    close(fds[0]);
    ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
    return v;
}

START_TEST(every_process_draws_its_own_numbers)
{
    uint64_t a, b, mine;

    d2o_rand_seed_fixed(7);
    a = child_draw();
    b = child_draw();
    mine = d2o_rand_u64();
    ck_assert(a != b);
    ck_assert(a != mine && b != mine);
    d2o_rand_seed_fixed(7);
    ck_assert(d2o_rand_u64() == mine); /* a fixed seed still repeats in its own process */
}
END_TEST

START_TEST(rand_differs_between_seeds)
{
    uint64_t a, b;

    d2o_rand_seed_fixed(1);
    a = d2o_rand_u64();
    d2o_rand_seed_fixed(2);
    b = d2o_rand_u64();
    ck_assert(a != b);
    d2o_rand_seed_fixed(1);
    ck_assert(d2o_rand_u64() == a);
    ck_assert(d2o_rand_below(1) == 0);
}
END_TEST

START_TEST(clocks_move_forward)
{
    int64_t m1 = d2o_mono_us(), m2;

    m2 = d2o_mono_us();
    ck_assert(m2 >= m1);
    ck_assert(d2o_wall_us() > 1700000000000000LL);
}
END_TEST

#if defined(__SANITIZE_ADDRESS__)
#define D2O_OWN_MALLOC 1 /* the sanitizer's allocator, not glibc's: nothing to observe */
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define D2O_OWN_MALLOC 1
#endif
#endif

/* After d2o_mem_keep_heap() a block of a bulk body's size comes from the heap, not from a fresh
 * mapping, and freeing it leaves its pages in the heap for the next one. */
START_TEST(worker_heap_keeps_freed_pages)
{
#ifndef D2O_OWN_MALLOC
    struct mallinfo2 before, held, after;
    size_t n = (size_t)6 << 20;
    char *p;

    d2o_mem_keep_heap();
    before = mallinfo2();
    if (before.arena == 0) {
        return; /* not glibc's allocator (valgrind replaces it): nothing to observe */
    }
    p = malloc(n);
    ck_assert_ptr_nonnull(p);
    memset(p, 1, n);
    held = mallinfo2();
    ck_assert_uint_eq(held.hblkhd, before.hblkhd); /* no mapping of its own */
    ck_assert_uint_ge(held.arena, before.arena + n);
    free(p);
    after = mallinfo2();
    ck_assert_uint_eq(after.arena, held.arena); /* not trimmed */
#endif
}
END_TEST

Suite *d2o_test_suite(void)
{
    Suite *s = suite_create("core");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, parse_i64_accepts_and_refuses);
    tcase_add_test(tc, strlcpy_cuts_and_terminates);
    tcase_add_test(tc, rfc3339_formats_utc);
    tcase_add_test(tc, edit_distance_counts);
    tcase_add_test(tc, backoff_stays_within_cap);
    tcase_add_test(tc, rand_differs_between_seeds);
    tcase_add_test(tc, every_process_draws_its_own_numbers);
    tcase_add_test(tc, clocks_move_forward);
    tcase_add_test(tc, worker_heap_keeps_freed_pages);
    suite_add_tcase(s, tc);
    return s;
}
