/*
 * Interruptible sleeps for backoff: a shutdown signal ends the wait at once.
 *
 * @process any.
 */
#ifndef D2O_WAIT_H
#define D2O_WAIT_H

#include <signal.h>
#include <stdint.h>

/*
 * Sleeps ms milliseconds (at most a year; <= 0 returns at once; monotonic clock, resumed after
 * unrelated interruptions) with ppoll(). If stop is not NULL, returns early as soon as *stop is
 * non-zero: it is checked before sleeping and after every EINTR, so a signal handler installed
 * WITHOUT SA_RESTART that sets *stop ends the wait. (A signal landing between the check and ppoll()
 * is seen only when the wait ends; the worker's event loop uses a signalfd for race-free shutdown.)
 * Returns 0 when the full time elapsed, 1 when stopped early, or a negative errno.
 * @blocking yes (up to ms).
 */
int d2o_wait_ms(int64_t ms, const volatile sig_atomic_t *stop);

#endif
