/* The one classifier (every row of its table) and the interruptible backoff wait. */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "d2o/classify.h"
#include "d2o/clock.h"
#include "d2o/util.h"
#include "d2o/wait.h"
#include "d2o_test.h"

struct row {
    CURLcode cc;
    long status;
    const char *code;
    enum d2o_action want;
};

static const struct row rows[] = {
    /* success */
    {CURLE_OK, 200, NULL, D2O_ACT_OK},
    {CURLE_OK, 201, NULL, D2O_ACT_OK},
    {CURLE_OK, 204, "", D2O_ACT_OK},
    {CURLE_OK, 200, "ThrottlingException", D2O_ACT_OK}, /* a 2xx never fails on a code */
    /* statuses without a code */
    {CURLE_OK, 408, NULL, D2O_ACT_RETRY},
    {CURLE_OK, 425, NULL, D2O_ACT_RETRY},
    {CURLE_OK, 429, NULL, D2O_ACT_THROTTLE},
    {CURLE_OK, 500, NULL, D2O_ACT_RETRY},
    {CURLE_OK, 501, NULL, D2O_ACT_RETRY},
    {CURLE_OK, 502, NULL, D2O_ACT_RETRY},
    {CURLE_OK, 503, NULL, D2O_ACT_RETRY},
    {CURLE_OK, 504, NULL, D2O_ACT_RETRY},
    {CURLE_OK, 599, NULL, D2O_ACT_RETRY},
    {CURLE_OK, 400, NULL, D2O_ACT_PERMANENT},
    {CURLE_OK, 401, NULL, D2O_ACT_PERMANENT},
    {CURLE_OK, 403, NULL, D2O_ACT_PERMANENT},
    {CURLE_OK, 404, NULL, D2O_ACT_PERMANENT},
    {CURLE_OK, 413, NULL, D2O_ACT_PERMANENT},
    {CURLE_OK, 0, NULL, D2O_ACT_RETRY},
    {CURLE_OK, 700, NULL, D2O_ACT_RETRY},
    /* transport */
    {CURLE_COULDNT_CONNECT, 0, NULL, D2O_ACT_RETRY},
    {CURLE_COULDNT_RESOLVE_HOST, 0, NULL, D2O_ACT_RETRY},
    {CURLE_OPERATION_TIMEDOUT, 0, NULL, D2O_ACT_RETRY},
    {CURLE_SEND_ERROR, 0, NULL, D2O_ACT_RETRY},
    {CURLE_RECV_ERROR, 0, NULL, D2O_ACT_RETRY},
    {CURLE_GOT_NOTHING, 0, NULL, D2O_ACT_RETRY},
    {CURLE_PARTIAL_FILE, 200, NULL, D2O_ACT_RETRY},
    {CURLE_PEER_FAILED_VERIFICATION, 0, NULL, D2O_ACT_FATAL},
    {CURLE_SSL_CACERT_BADFILE, 0, NULL, D2O_ACT_FATAL},
    {CURLE_SSL_CERTPROBLEM, 0, NULL, D2O_ACT_FATAL},
    {CURLE_URL_MALFORMAT, 0, NULL, D2O_ACT_FATAL},
    {CURLE_UNSUPPORTED_PROTOCOL, 0, NULL, D2O_ACT_FATAL},
    {CURLE_FILESIZE_EXCEEDED, 200, NULL, D2O_ACT_PERMANENT},
    /* transport errors win over a status and a code */
    {CURLE_OPERATION_TIMEDOUT, 400, "ValidationException", D2O_ACT_RETRY},
    /* throttling codes */
    {CURLE_OK, 400, "ProvisionedThroughputExceededException", D2O_ACT_THROTTLE},
    {CURLE_OK, 400, "LimitExceededException", D2O_ACT_THROTTLE},
    {CURLE_OK, 400, "ThrottlingException", D2O_ACT_THROTTLE},
    {CURLE_OK, 400, "Throttling", D2O_ACT_THROTTLE},
    {CURLE_OK, 503, "RequestLimitExceeded", D2O_ACT_THROTTLE},
    {CURLE_OK, 429, "TooManyRequestsException", D2O_ACT_THROTTLE},
    {CURLE_OK, 400, "KMSThrottlingException", D2O_ACT_THROTTLE},
    /* iterator */
    {CURLE_OK, 400, "ExpiredIteratorException", D2O_ACT_REFRESH_ITERATOR},
    /* credentials */
    {CURLE_OK, 400, "ExpiredTokenException", D2O_ACT_REFRESH_CREDS},
    {CURLE_OK, 403, "ExpiredToken", D2O_ACT_REFRESH_CREDS},
    {CURLE_OK, 403, "RequestExpired", D2O_ACT_REFRESH_CREDS},
    {CURLE_OK, 400, "UnrecognizedClientException", D2O_ACT_REFRESH_CREDS},
    {CURLE_OK, 400, "InvalidSignatureException", D2O_ACT_REFRESH_CREDS},
    {CURLE_OK, 403, "SignatureDoesNotMatch", D2O_ACT_REFRESH_CREDS},
    /* permanent */
    {CURLE_OK, 400, "ResourceNotFoundException", D2O_ACT_PERMANENT},
    {CURLE_OK, 400, "AccessDeniedException", D2O_ACT_PERMANENT},
    {CURLE_OK, 403, "AccessDenied", D2O_ACT_PERMANENT},
    {CURLE_OK, 400, "KMSAccessDeniedException", D2O_ACT_PERMANENT},
    {CURLE_OK, 400, "KMSDisabledException", D2O_ACT_PERMANENT},
    {CURLE_OK, 400, "KMSInvalidStateException", D2O_ACT_PERMANENT},
    {CURLE_OK, 400, "KMSNotFoundException", D2O_ACT_PERMANENT},
    {CURLE_OK, 400, "KMSOptInRequired", D2O_ACT_PERMANENT},
    {CURLE_OK, 400, "InvalidArgumentException", D2O_ACT_PERMANENT},
    {CURLE_OK, 400, "ValidationException", D2O_ACT_PERMANENT},
    {CURLE_OK, 500, "AccessDeniedException", D2O_ACT_PERMANENT}, /* the code decides */
    /* server side */
    {CURLE_OK, 500, "InternalFailure", D2O_ACT_RETRY},
    {CURLE_OK, 503, "ServiceUnavailable", D2O_ACT_RETRY},
    {CURLE_OK, 500, "InternalServerError", D2O_ACT_RETRY},
    {CURLE_OK, 400, "InternalFailure", D2O_ACT_RETRY},
    /* prefixes and suffixes */
    {CURLE_OK, 400, "com.amazonaws.kinesis.v20131202#ExpiredIteratorException",
     D2O_ACT_REFRESH_ITERATOR},
    {CURLE_OK, 400, "ExpiredTokenException:http://internal.amazon.com/coral/",
     D2O_ACT_REFRESH_CREDS},
    {CURLE_OK, 400, "aws#ThrottlingException:http://x/y#z", D2O_ACT_THROTTLE},
    /* unknown codes: by status */
    {CURLE_OK, 400, "ResourceInUseException", D2O_ACT_PERMANENT},
    {CURLE_OK, 503, "SomethingNew", D2O_ACT_RETRY},
    {CURLE_OK, 429, "SomethingNew", D2O_ACT_THROTTLE},
};

START_TEST(every_row)
{
    const struct row *r = &rows[_i];
    const char *reason = NULL;
    enum d2o_action a = d2o_classify(r->cc, r->status, r->code, &reason);

    ck_assert_msg(a == r->want, "row %d (curl %d, HTTP %ld, %s): got %s, want %s", _i, r->cc,
                  r->status, r->code ? r->code : "-", d2o_action_name(a), d2o_action_name(r->want));
    ck_assert_ptr_nonnull(reason);
    ck_assert_int_gt((int)strlen(reason), 0);
}
END_TEST

START_TEST(reason_is_optional_and_names_exist)
{
    ck_assert_int_eq(d2o_classify(CURLE_OK, 429, NULL, NULL), D2O_ACT_THROTTLE);
    ck_assert_str_eq(d2o_action_name(D2O_ACT_REFRESH_ITERATOR), "refresh_iterator");
    ck_assert_str_eq(d2o_action_name(D2O_ACT_FATAL), "fatal");
}
END_TEST

START_TEST(code_name_strips_prefix_and_suffix)
{
    char out[64];

    ck_assert_uint_eq(d2o_classify_code_name("a.b.c#Name:http://x#y", out, sizeof(out)), 4);
    ck_assert_str_eq(out, "Name");
    ck_assert_uint_eq(d2o_classify_code_name("Plain", out, sizeof(out)), 5);
    ck_assert_str_eq(out, "Plain");
    ck_assert_uint_eq(d2o_classify_code_name(NULL, out, sizeof(out)), 0);
    ck_assert_str_eq(out, "");
    ck_assert_uint_eq(d2o_classify_code_name("LongerThanFour", out, 5), 4);
    ck_assert_str_eq(out, "Long");
}
END_TEST

static volatile sig_atomic_t stop_flag;

static void on_usr1(int sig)
{
    (void)sig;
    stop_flag = 1;
}

START_TEST(wait_full_time_without_stop)
{
    int64_t t0 = d2o_mono_ms();

    ck_assert_int_eq(d2o_wait_ms(30, NULL), 0);
    ck_assert_int_ge(d2o_mono_ms() - t0, 30);
    ck_assert_int_eq(d2o_wait_ms(0, NULL), 0);
    ck_assert_int_eq(d2o_wait_ms(-5, NULL), 0);
}
END_TEST

START_TEST(wait_already_stopped_returns_at_once)
{
    volatile sig_atomic_t s = 1;

    ck_assert_int_eq(d2o_wait_ms(60000, &s), 1);
}
END_TEST

START_TEST(wait_ends_on_signal)
{
    struct sigaction sa;
    pid_t parent = getpid(), child;
    int st;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_usr1; /* no SA_RESTART: ppoll gets EINTR */
    sigemptyset(&sa.sa_mask);
    ck_assert_int_eq(sigaction(SIGUSR1, &sa, NULL), 0);
    stop_flag = 0;
    child = d2o_test_fork();
    if (child == 0) {
        usleep(50 * 1000);
        kill(parent, SIGUSR1);
        _exit(0);
    }
    /* 60 s: if the signal did not end the wait the test would time out, not pass */
    ck_assert_int_eq(d2o_wait_ms(60000, &stop_flag), 1);
    ck_assert_int_eq(waitpid(child, &st, 0), child);
    ck_assert_int_eq(stop_flag, 1);
}
END_TEST

START_TEST(a_blocked_index_is_waited_for)
{
    /* index.blocks.write (403) and the disk flood stage (429) */
    ck_assert_int_eq(d2o_classify_bulk_item(403, "cluster_block_exception", 0), D2O_ITEM_BLOCKED);
    ck_assert_int_eq(d2o_classify_bulk_item(403, "cluster_block_exception", 1), D2O_ITEM_BLOCKED);
    ck_assert_int_eq(d2o_classify_bulk_item(429, "cluster_block_exception", 0), D2O_ITEM_BLOCKED);
    /* an index being created */
    ck_assert_int_eq(d2o_classify_bulk_item(503, "unavailable_shards_exception", 0),
                     D2O_ITEM_BLOCKED);
    ck_assert_int_eq(d2o_classify_bulk_item(404, "index_not_found_exception", 0), D2O_ITEM_BLOCKED);
    /* a delete of a document of a missing index is simply absent */
    ck_assert_int_eq(d2o_classify_bulk_item(404, "index_not_found_exception", 1), D2O_ITEM_ABSENT);
    ck_assert_int_eq(d2o_classify_bulk_item(403, "security_exception", 0), D2O_ITEM_PERMANENT);
    ck_assert_str_eq(d2o_item_class_name(D2O_ITEM_BLOCKED), "blocked");
}
END_TEST

Suite *d2o_test_suite(void)
{
    Suite *s = suite_create("classify");
    TCase *tc = tcase_create("classify");

    tcase_add_loop_test(tc, every_row, 0, (int)D2O_ARRAY_SIZE(rows));
    tcase_add_test(tc, reason_is_optional_and_names_exist);
    tcase_add_test(tc, code_name_strips_prefix_and_suffix);
    tcase_add_test(tc, wait_full_time_without_stop);
    tcase_add_test(tc, wait_already_stopped_returns_at_once);
    tcase_add_test(tc, wait_ends_on_signal);
    tcase_add_test(tc, a_blocked_index_is_waited_for);
    suite_add_tcase(s, tc);
    return s;
}
