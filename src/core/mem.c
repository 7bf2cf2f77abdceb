/* Record-path allocation with a failure-injection seam; see include/d2o/mem.h. */
#include <malloc.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "d2o/mem.h"
#include "d2o/util.h"

/* Whether this call should fail: with probability 1/K under D2O_TEST_FAIL_ALLOC=K. */
static bool inject(void)
{
    static int64_t k = -1;
    static uint64_t x = 0x2545f4914f6cdd1dull;

    if (k < 0) {
        const char *v = getenv("D2O_TEST_FAIL_ALLOC");

        if (!v || d2o_parse_i64(v, 1, INT32_MAX, &k) < 0) {
            k = 0;
        }
    }
    if (k == 0) {
        return false;
    }
    x ^= x << 13; /* xorshift64: its own sequence, apart from the backoff generator */
    x ^= x >> 7;
    x ^= x << 17;
    return x % (uint64_t)k == 0;
}

void *d2o_malloc(size_t n)
{
    return inject() ? NULL : malloc(n);
}

void *d2o_calloc(size_t n, size_t size)
{
    return inject() ? NULL : calloc(n, size);
}

void *d2o_realloc(void *p, size_t n)
{
    return inject() ? NULL : realloc(p, n);
}

char *d2o_strdup(const char *s)
{
    return inject() ? NULL : strdup(s);
}

void d2o_mem_keep_heap(void)
{
    /* glibc only; a refused setting leaves glibc's default behaviour, which is correct too */
    (void)mallopt(M_MMAP_THRESHOLD, (int)D2O_MEM_MMAP_THRESHOLD);
    (void)mallopt(M_TRIM_THRESHOLD, (int)D2O_MEM_TRIM_THRESHOLD);
}
