#include <stdlib.h>
#include <unistd.h>

#include "d2o_test.h"

int main(void)
{
    SRunner *sr = srunner_create(d2o_test_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

pid_t d2o_test_fork(void)
{
    pid_t pid = fork();

    if (pid != 0) {
        ck_assert_msg(pid > 0, "fork failed");
    }
    return pid;
}
