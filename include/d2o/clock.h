/*
 * Clocks. Timers use the monotonic clock; logs and SigV4 use the wall clock. Lease expiry never
 * uses either: the database's now() decides it.
 */
#ifndef D2O_CLOCK_H
#define D2O_CLOCK_H

#include <stdint.h>

int64_t d2o_mono_ms(void);
int64_t d2o_mono_us(void);
int64_t d2o_wall_us(void);

#endif
