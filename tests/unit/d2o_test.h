/* Shared main() for the Check unit suites: each test_<module>.c defines d2o_test_suite(). */
#ifndef D2O_TEST_H
#define D2O_TEST_H

#include <check.h>

Suite *d2o_test_suite(void);

#endif
