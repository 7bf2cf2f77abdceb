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

/*
 * Tells glibc's allocator to keep the heap pages a worker frees (called once, at a worker's
 * start). A worker allocates and frees the same large blocks over and over: GetRecords answers
 * and their decoded records, bulk bodies of up to bulk_max_bytes, response buffers. By default
 * glibc maps the larger ones afresh each time (mmap) and gives freed pages at the heap's top back
 * to the kernel (trim), so each answer and body faulted in new zeroed pages. Blocks up to
 * D2O_MEM_MMAP_THRESHOLD now come from the heap, and up to D2O_MEM_TRIM_THRESHOLD bytes free at
 * its top stay mapped. The peak a worker reaches is unchanged: pages are kept, not added.
 */
#define D2O_MEM_MMAP_THRESHOLD ((size_t)16 << 20)
#define D2O_MEM_TRIM_THRESHOLD ((size_t)32 << 20)
void d2o_mem_keep_heap(void);

#endif
