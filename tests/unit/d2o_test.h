/* Shared main() for the Check unit suites: each test_<module>.c defines d2o_test_suite(). */
#ifndef D2O_TEST_H
#define D2O_TEST_H

#include <check.h>
#include <sys/types.h>

Suite *d2o_test_suite(void);

/* fork() for a test's helper process. Check reports every passing assertion as a message
 * written to the runner's message file; a child inherits that descriptor and shares its file
 * offset, so one assertion in the child, even a passing one, writes a record at whatever
 * offset the runner has just rewound to and shifts what the runner reads next ("Bad message
 * type"). The result is asserted here in the parent only; the child must make no Check call. */
pid_t d2o_test_fork(void);

#endif
