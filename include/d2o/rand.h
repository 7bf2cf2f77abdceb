/*
 * Per-process pseudo-random numbers and the one backoff formula.
 *
 * Each process seeds its own generator after fork() (d2o_rand_seed), so workers never draw the
 * same jitter; a process that draws before seeding (or a child that inherited its parent's
 * state) is seeded at its first draw. Not for cryptography.
 */
#ifndef D2O_RAND_H
#define D2O_RAND_H

#include <stdint.h>

/* Seeds the process generator from getrandom() mixed with the pid. Call after every fork(). */
void d2o_rand_seed(void);
/* Seeds with a fixed value, for tests. */
void d2o_rand_seed_fixed(uint64_t seed);
uint64_t d2o_rand_u64(void);
/* Uniform in [0, bound); bound 0 gives 0. */
uint64_t d2o_rand_below(uint64_t bound);

/*
 * Capped full-jitter backoff: uniform in [0, min(cap_ms, base_ms * 2^attempt)].
 * attempt starts at 0; the exponent is capped so large attempt counts cannot overflow.
 */
int64_t d2o_backoff_ms(int64_t base_ms, int64_t cap_ms, unsigned attempt);

#endif
