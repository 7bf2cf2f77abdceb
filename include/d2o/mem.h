/*
 * Allocation on the record path (the worker's records, acknowledgements, dead-letter rows and
 * bulk items), with a test seam: when the environment variable D2O_TEST_FAIL_ALLOC is a number
 * K > 0, each call fails (returns NULL) with probability 1/K, so an integration test can check
 * that no allocation failure loses a record, acknowledges one without its dead-letter row, or
 * leaves a shard unable to checkpoint. Otherwise the same as malloc, calloc, realloc, strdup.
 */
#ifndef D2O_MEM_H
#define D2O_MEM_H

#include <stddef.h>

void *d2o_malloc(size_t n);
void *d2o_calloc(size_t n, size_t size);
void *d2o_realloc(void *p, size_t n);
char *d2o_strdup(const char *s);

#endif
