/*
 * Small checked helpers shared by every module: error text, number parsing, string copies.
 * The libc functions they replace (strerror, atoi, strtok, sprintf, strcpy, ...) are banned by
 * the lint suite.
 */
#ifndef D2O_UTIL_H
#define D2O_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define D2O_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Text for an errno value (positive or negative), thread-safe. Returns buf or a static string. */
const char *d2o_strerror(int err, char *buf, size_t size);

/*
 * Parses a whole string as a base-10 integer in [min, max]. Leading/trailing spaces and an empty
 * string are refused. Returns 0, -EINVAL (not a number) or -ERANGE (out of range).
 */
__attribute__((warn_unused_result)) int d2o_parse_i64(const char *s, int64_t min, int64_t max,
                                                      int64_t *out);
/* Same as d2o_parse_i64 for a string of n bytes that need not be NUL-terminated. */
__attribute__((warn_unused_result)) int d2o_parse_i64n(const char *s, size_t n, int64_t min,
                                                       int64_t max, int64_t *out);

/* Copies src into dst (size bytes), always NUL-terminating. Returns -E2BIG if it was cut. */
int d2o_strlcpy(char *dst, const char *src, size_t size);

/* Case-insensitive ASCII equality of two NUL-terminated strings. */
bool d2o_streq_ci(const char *a, const char *b);

/* Formats a UTC timestamp from epoch microseconds as RFC 3339 with milliseconds:
 * 2026-11-25T02:12:34.123Z */
int d2o_fmt_rfc3339_ms(int64_t epoch_us, char *buf, size_t size);

/* Levenshtein distance, for "did you mean" suggestions; capped at 255. */
unsigned d2o_edit_distance(const char *a, const char *b);

/* True when s[0..n) is valid UTF-8 without NUL bytes: text a terminal or JSON string can carry
 * as it is. */
bool d2o_utf8_text(const char *s, size_t n);

struct iovec;

/* The bytes of n pieces together (a body in pieces: d2o/http.h, d2o/sigv4.h). */
size_t d2o_iov_total(const struct iovec *v, size_t n);

/*
 * A named place that integration tests can freeze a process at. When the environment variable
 * D2O_TEST_STOP_AT equals name, the process stops itself with SIGSTOP the first time it gets
 * there (a test then checks what the others do, and sends SIGCONT). Otherwise it costs one
 * cached getenv per process.
 */
void d2o_test_point(const char *name);

#endif
